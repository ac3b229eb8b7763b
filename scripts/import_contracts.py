"""Two import-linter contract types (`make lint` runs `lint-imports`; the contracts are in
pyproject.toml), for rules no built-in type states for every domain at once:

- `private_repositories`: a domain's `repository` module is imported only from inside that domain
  (`backend.<domain>.…`); every other domain goes through the domain's service. A new domain's
  repository is covered without another line of configuration.
- `acyclic_modules`: no module of the root package reaches itself through its imports. Imports
  inside functions count like any other (grimp sees them), so a lazy import cannot hide a cycle.

Neither takes an exceptions list."""

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, output
from importlinter.domain import fields

Link = tuple[str, str, list[int]]  # importer, imported, the importer's lines


def _lines(graph: ImportGraph, importer: str, imported: str) -> list[int]:
    details = graph.get_import_details(importer=importer, imported=imported)
    return sorted(int(d["line_number"]) for d in details)


def _render(links: list[Link]) -> None:
    for importer, imported, lines in links:
        output.print_error(f"- {importer} -> {imported} (l.{', '.join(map(str, lines))})", bold=False)
    output.new_line()


class PrivateRepositories(Contract):
    repository_name = fields.StringField()  # the module name each domain keeps private

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        illegal: list[Link] = []
        name: str = self.repository_name  # type: ignore[assignment]  # a field, a str once populated
        for module in sorted(graph.modules):
            if module.rsplit(".", 1)[-1] != name or module.count(".") != 2:
                continue
            domain = module.rsplit(".", 1)[0]
            for importer in sorted(graph.find_modules_that_directly_import(module)):
                if importer != domain and not importer.startswith(domain + "."):
                    illegal.append((importer, module, _lines(graph, importer, module)))
        return ContractCheck(kept=not illegal, metadata={"links": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("Imports of another domain's repository (call its service instead):", bold=False)
        output.new_line()
        _render(check.metadata["links"])


class AcyclicModules(Contract):
    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        closing: list[Link] = []
        for importer in sorted(graph.modules):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                # importer -> imported closes a cycle when imported leads back to importer.
                if graph.find_shortest_chain(importer=imported, imported=importer) is not None:
                    closing.append((importer, imported, _lines(graph, importer, imported)))
        return ContractCheck(kept=not closing, metadata={"links": closing})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("Imports on a cycle (each leads back to its importer):", bold=False)
        output.new_line()
        _render(check.metadata["links"])
