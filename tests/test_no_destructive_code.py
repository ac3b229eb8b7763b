"""Persistence rule 1: application code never drops, truncates or bulk-deletes. An AST scan of
backend/ and scripts/ (except the documented restore tool, scripts/restore*, which writes only
into a scratch or explicitly named target database) fails on any such call."""

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("backend", "scripts")
EXEMPT_PREFIXES = ("scripts/restore",)  # documented restore tool (docs/PERSISTENCE.md)

DESTRUCTIVE_METHODS = frozenset(
    {
        "drop",
        "drop_collection",
        "drop_database",
        "drop_index",
        "drop_indexes",
        "delete_one",
        "delete_many",
        "find_one_and_delete",
        "remove",
        "truncate",
    }
)
DESTRUCTIVE_NAMES = frozenset({"DeleteOne", "DeleteMany"})  # bulk_write operations
DESTRUCTIVE_COMMANDS = frozenset({"drop", "dropDatabase", "dropIndexes", "delete", "compact"})
DESTRUCTIVE_STAGES = frozenset({"$out"})  # replaces the target collection wholesale

# (path, what, function) -> why it is safe. Keep it tiny; every entry needs a real reason.
ALLOWED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str
    function: str

    def key(self) -> tuple[str, str, str]:
        return (self.path, self.what, self.function)


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.stack: list[str] = ["<module>"]
        self.found: list[Finding] = []

    def _hit(self, node: ast.AST, what: str) -> None:
        self.found.append(Finding(self.path, getattr(node, "lineno", 0), what, self.stack[-1]))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in DESTRUCTIVE_METHODS:
            self._hit(node, func.attr)
        if isinstance(func, ast.Attribute) and func.attr == "command" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.Dict) and first.keys and isinstance(first.keys[0], ast.Constant):
                name = first.keys[0].value
            if name in DESTRUCTIVE_COMMANDS:
                self._hit(node, f"command:{name}")
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "rename"
            and any(k.arg == "dropTarget" for k in node.keywords)
        ):
            self._hit(node, "rename:dropTarget")
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and arg.value in DESTRUCTIVE_METHODS:
                self._hit(node, f"getattr:{arg.value}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DESTRUCTIVE_NAMES:
            self._hit(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in DESTRUCTIVE_NAMES:
            self._hit(node, node.attr)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name in DESTRUCTIVE_NAMES:
                self._hit(node, alias.name)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if isinstance(key, ast.Constant) and key.value in DESTRUCTIVE_STAGES:
                self._hit(node, f"stage:{key.value}")
        self.generic_visit(node)


def scan_source(source: str, path: str) -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.found


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(EXEMPT_PREFIXES) and "__pycache__" not in path.parts:
                files.append(path)
    return files


def findings() -> list[Finding]:
    return [f for p in scanned_files() for f in scan_source(p.read_text(), p.relative_to(ROOT).as_posix())]


def test_application_code_has_no_destructive_operations() -> None:
    offending = [f for f in findings() if f.key() not in ALLOWED]
    assert offending == [], "\n".join(f"{f.path}:{f.line} {f.what} in {f.function}()" for f in offending)


def test_allowlist_is_justified_and_not_stale() -> None:
    present = {f.key() for f in findings()}
    for key, why in ALLOWED.items():
        assert len(why.split()) >= 5, f"{key}: say why this is safe"
        assert key in present, f"{key}: no longer in the code; remove it from ALLOWED"


def test_scan_covers_the_tree() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert "backend/app.py" in files and "backend/tickets/service.py" in files
    assert not any(f.startswith("scripts/restore") for f in files)


BAD = """
from pymongo import DeleteMany
async def purge(db, client):
    await db.tickets.delete_many({})
    await db.messages.delete_one({"_id": 1})
    await db.users.find_one_and_delete({})
    await db.drop_collection("tickets")
    await client.drop_database("support_chat")
    await db.tickets.drop()
    await db.command("dropDatabase")
    await db.command({"drop": "tickets"})
    await db.tickets.bulk_write([DeleteMany({})])
    await db.tickets.aggregate([{"$out": "tickets"}])
    await db.tmp.rename("tickets", dropTarget=True)
    getattr(db.tickets, "delete_many")({})
    db.legacy.remove({})
"""


def test_the_scanner_catches_every_form() -> None:
    what = {f.what for f in scan_source(BAD, "x.py")}
    assert what >= {
        "delete_many",
        "delete_one",
        "find_one_and_delete",
        "drop_collection",
        "drop_database",
        "drop",
        "command:dropDatabase",
        "command:drop",
        "DeleteMany",
        "stage:$out",
        "rename:dropTarget",
        "getattr:delete_many",
        "remove",
    }
    harmless = "async def f(db):\n    await db.t.insert_one({})\n    await db.t.update_one({}, {})\n"
    assert scan_source(harmless, "y.py") == []
