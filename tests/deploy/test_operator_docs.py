"""What README.md and DEPLOY_RULES.md tell an operator to run or rely on exists as they say."""

import importlib.util
import re
from pathlib import Path

import pytest

from backend.ledger.model import GUARDED

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "DEPLOY_RULES.md")
_MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.M)


def _named_modules() -> set[str]:
    found: set[str] = set()
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        found |= {name.rstrip(".") for name in re.findall(r"python -m ([A-Za-z_][\w.]*)", text)}
    return found


def _runs_as_main(module: str) -> bool:
    """`python -m module` does something: a package with a __main__, or a module with a main guard."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return spec.origin is not None and _MAIN_GUARD.search(Path(spec.origin).read_text()) is not None


def test_the_docs_name_entry_points() -> None:
    assert {"backend.outbound", "backend.webhooks", "backend.media"} <= _named_modules()


@pytest.mark.parametrize("module", sorted(_named_modules()))
def test_every_python_m_in_the_docs_is_runnable(module: str) -> None:
    """A module without a __main__ exits 0 doing nothing (as `backend.webhooks.processor` did)."""
    assert _runs_as_main(module), f"`python -m {module}` named in {DOCS} runs nothing"


def test_the_ledger_count_in_deploy_rules_is_the_code_s() -> None:
    rules = (ROOT / "DEPLOY_RULES.md").read_text()
    assert f"counts of {len(GUARDED)} collections" in rules
    listed = re.search(r"Vigiadas \((\d+)\): (.*?) \|", rules)
    assert listed is not None and int(listed.group(1)) == len(GUARDED)
    assert re.findall(r"`(\w+)`", listed.group(2)) == list(GUARDED)


def test_every_named_volume_is_in_the_never_delete_list() -> None:
    import yaml

    volumes = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
    rules = (ROOT / "DEPLOY_RULES.md").read_text()
    never = rules[rules.index("Volumes que **nunca** são apagados") :].split("\n- ")[0]
    for volume in volumes.values():
        assert f"`{volume['name']}`" in never or volume["name"].startswith("iaze_evolution"), volume["name"]
