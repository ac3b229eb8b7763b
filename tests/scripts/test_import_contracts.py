"""The two custom import-linter contract types (scripts/import_contracts.py) break on what they
forbid — a domain importing another's repository, an import cycle closed inside a function — and
keep a package without either. `make lint` runs them on backend/ (pyproject.toml)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

CONFIG = """
[tool.importlinter]
root_packages = ["shop"]
contract_types = [
  "private_repositories: scripts.import_contracts.PrivateRepositories",
  "acyclic_modules: scripts.import_contracts.AcyclicModules",
]

[[tool.importlinter.contracts]]
name = "private repositories"
type = "private_repositories"
repository_name = "repository"

[[tool.importlinter.contracts]]
name = "acyclic modules"
type = "acyclic_modules"
"""


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"shop/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(ROOT)])}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(where / "pyproject.toml"), "--no-cache"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


CLEAN = {
    "shop/orders/__init__.py": "",
    "shop/orders/repository.py": "def get(): ...\n",
    "shop/orders/service.py": "from shop.orders.repository import get as get\n",
    "shop/billing/__init__.py": "",
    "shop/billing/service.py": "from shop.orders import service as orders\n",
}


def test_a_package_that_follows_both_rules_keeps_the_contracts(tmp_path: Path) -> None:
    result = _lint(_package(tmp_path, CLEAN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_another_domains_repository_and_a_lazy_import_cycle_break_them(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "shop/billing/service.py": """
            from shop.orders import repository
            from shop.orders import service as orders
        """,
        "shop/orders/service.py": """
            from shop.orders.repository import get as get

            def refund():
                from shop.billing import service  # hides the cycle orders -> billing -> orders
        """,
    }
    result = _lint(_package(tmp_path, files))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 2 broken" in result.stdout
    assert "- shop.billing.service -> shop.orders.repository (l.2)" in result.stdout
    assert "- shop.orders.service -> shop.billing.service (l.5)" in result.stdout
    assert "- shop.billing.service -> shop.orders.service (l.3)" in result.stdout
