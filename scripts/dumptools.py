"""MongoDB's own Database Tools (mongodump/mongorestore), when this machine has them.

Looked up in var/bin (where `make mongo-tools` would build them) and then on PATH. BACKUP_TOOL
chooses: "auto" (the real tools when found, else the built-in writer in scripts/archive.py),
"mongo-tools" (required) or "python" (always built-in). Both write the same archive format.
"""

import shutil
import subprocess
from pathlib import Path

from scripts.common import Exit, fail

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BIN = ROOT / "var" / "bin"
CHOICES = ("auto", "mongo-tools", "python")


def find(name: str) -> str | None:
    local = LOCAL_BIN / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def use_real_tools(choice: str) -> bool:
    if choice not in CHOICES:
        fail(Exit.USAGE, f"BACKUP_TOOL/--tool must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "python":
        return False
    found = find("mongodump") is not None and find("mongorestore") is not None
    if choice == "mongo-tools" and not found:
        fail(Exit.USAGE, f"--tool mongo-tools: mongodump/mongorestore not found in {LOCAL_BIN} or on PATH")
    return found


def version(name: str) -> str:
    binary = find(name)
    if binary is None:
        return "absent"
    res = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (res.stdout or res.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def mongodump(uri: str, db: str, archive: Path) -> None:
    binary = find("mongodump")
    assert binary is not None
    cmd = [binary, f"--uri={uri}", f"--db={db}", f"--archive={archive}", "--gzip"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        fail(Exit.DATABASE, f"mongodump failed ({res.returncode}): {res.stderr.strip()[-2000:]}")


def mongorestore(uri: str, archive: Path, *, source_db: str, target_db: str) -> None:
    """Insert-only (no --drop): documents whose _id already exists are kept, never replaced."""
    binary = find("mongorestore")
    assert binary is not None
    cmd = [
        binary,
        f"--uri={uri}",
        f"--archive={archive}",
        "--gzip",
        f"--nsInclude={source_db}.*",
        f"--nsFrom={source_db}.*",
        f"--nsTo={target_db}.*",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        fail(Exit.DATABASE, f"mongorestore failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
