"""One tenancy form, held mechanically over every repository.

The rule: every function (or method) defined in a `backend.<domain>.repository` module that reads
a tenant-owned collection (`backend.core.tenancy.TENANT_OWNED`) either
- takes a parameter annotated `TenantScope` and uses it in its body (the scoped base:
  `scope.filter(...)` for queries, `scope.get(...)` by `_id`), or
- is named `*_internal`: a read done for no user (workers, the sweep, the projection, sign-in before
  the principal is known, migrations, scripts), which says so at every call site.

"Reads", decided from the function's own source (AST), with nothing listed by hand:
1. a call `X[NAME].<m>(...)` where `m` is a read method of a collection (READ_METHODS) and NAME is
   a constant of the module whose value is a tenant-owned collection's name;
2. a call that passes such an `X[NAME]` to a read helper (`single_flight.find_by_id`, and the
   scope's own coroutine methods: `scope.get`, `scope.page_by_id`, `scope.page_by_time`);
3. a call to another function of the same module that reads (`update` re-reading through `get`).
Writes (`insert_one`, `update_one`, `update_if`) are not reads: callers write what they read in scope.
"""

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import backend
from backend.core.tenancy import TENANT_OWNED, TenantScope

READ_METHODS = frozenset(
    {
        "find",
        "find_one",
        "count_documents",
        "distinct",
        "aggregate",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
        "estimated_document_count",
    }
)
# Helpers handed a collection to read: the scope's own (its get and pages) and the shared reads.
READ_HELPERS = frozenset({"find_by_id", *(n for n, f in vars(TenantScope).items() if inspect.iscoroutinefunction(f))})
INTERNAL_SUFFIX = "_internal"


def repository_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(backend.__path__) if m.ispkg]
    found = []
    for name in names:
        try:
            found.append(importlib.import_module(f"backend.{name}.repository"))
        except ModuleNotFoundError as exc:
            if exc.name != f"backend.{name}.repository":
                raise
    return found


def functions_of(module: ModuleType) -> dict[str, Callable[..., Any]]:
    """Every function and method the module itself defines, by qualified name."""
    out: dict[str, Callable[..., Any]] = {}
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            out[name] = obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, member in vars(obj).items():
                # Not the methods a decorator writes (a dataclass's `__init__`, `__eq__`...): no
                # source of the module's own, and no reads.
                if inspect.isfunction(member) and member.__code__.co_filename == module.__file__:
                    out[f"{name}.{attr}"] = member
    return out


def _tenant_collection(node: ast.AST, constants: dict[str, Any]) -> bool:
    """`db[NAME]` (any receiver) where NAME names a tenant-owned collection."""
    if not isinstance(node, ast.Subscript):
        return False
    key = node.slice
    value = constants.get(key.id) if isinstance(key, ast.Name) else getattr(key, "value", None)
    return isinstance(value, str) and value in TENANT_OWNED


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def direct_reads_and_calls(tree: ast.AST, constants: dict[str, Any]) -> tuple[bool, set[str]]:
    reads, calls = False, set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in READ_METHODS and _tenant_collection(func.value, constants):
            reads = True
        name = _called_name(node)
        if name in READ_HELPERS and any(_tenant_collection(a, constants) for a in node.args):
            reads = True
        if isinstance(func, ast.Name):
            calls.add(func.id)
    return reads, calls


def _scope_params(func: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.annotation is TenantScope or p.annotation == "TenantScope"
    ]


def _uses(tree: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))


def violations(functions: dict[str, Callable[..., Any]], constants: dict[str, Any]) -> dict[str, bool]:
    """For each function that reads a tenant-owned collection: whether it breaks the rule."""
    trees = {name: ast.parse(textwrap.dedent(inspect.getsource(f))) for name, f in functions.items()}
    direct, calls = {}, {}
    for name, tree in trees.items():
        direct[name], calls[name] = direct_reads_and_calls(tree, constants)
    reading = {n for n, r in direct.items() if r}
    changed = True
    while changed:  # a call to a reading function of the module is a read
        changed = False
        for name in trees:
            if name not in reading and calls[name] & reading:
                reading.add(name)
                changed = True
    result = {}
    for name in sorted(reading):
        scoped = any(_uses(trees[name], p) for p in _scope_params(functions[name]))
        internal = name.rsplit(".", 1)[-1].endswith(INTERNAL_SUFFIX)
        result[name] = not (scoped or internal)
    return result


def check(module: ModuleType) -> dict[str, bool]:
    return violations(functions_of(module), vars(module))


def test_every_repository_read_of_a_tenant_owned_collection_is_scoped_or_internal() -> None:
    modules = repository_modules()
    checked: dict[str, bool] = {}
    for module in modules:
        checked.update({f"{module.__name__}.{n}": bad for n, bad in check(module).items()})
    # The listing sees the repositories and their reads (the rule is never vacuously true).
    assert {m.__name__ for m in modules} >= {"backend.tickets.repository", "backend.users.repository"}
    assert "backend.users.repository.get_internal" in checked
    assert "backend.tickets.repository.list_page" in checked
    assert "backend.connections.repository.update" in checked  # reads through `get`
    offenders = sorted(name for name, bad in checked.items() if bad)
    assert offenders == [], f"unscoped reads of tenant-owned collections, not named *_internal: {offenders}"


SAMPLE = """
from typing import Any
from backend.core.tenancy import TenantScope

COLLECTION = "tickets"
OTHER = "webhook_events_raw"


async def get_loose(db: Any, ticket_id: str) -> Any:
    return await db[COLLECTION].find_one({"_id": ticket_id})


async def get_internal(db: Any, ticket_id: str) -> Any:
    return await db[COLLECTION].find_one({"_id": ticket_id})


async def get(db: Any, scope: TenantScope, ticket_id: str) -> Any:
    return await scope.get(db[COLLECTION], ticket_id)


async def scope_taken_not_used(db: Any, scope: TenantScope) -> Any:
    return await db[COLLECTION].count_documents({})


async def update_then_reread(db: Any, ticket_id: str) -> Any:
    await db[COLLECTION].update_one({"_id": ticket_id}, {"$set": {}})
    return await get_internal(db, ticket_id)


async def write_only(db: Any, doc: Any) -> None:
    await db[COLLECTION].insert_one(doc)


async def not_tenant_owned(db: Any, raw_id: str) -> Any:
    return await db[OTHER].find_one({"_id": raw_id})
"""


def test_the_check_flags_an_unscoped_read_and_accepts_scoped_or_internal_ones(tmp_path: Path) -> None:
    path = tmp_path / "sample_repository.py"
    path.write_text(SAMPLE)
    spec = importlib.util.spec_from_file_location("sample_repository", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert check(module) == {
        "get": False,
        "get_internal": False,
        "get_loose": True,
        "scope_taken_not_used": True,
        "update_then_reread": True,
    }
