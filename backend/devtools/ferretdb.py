"""A local FerretDB (MongoDB wire protocol on SQLite files) for development and tests.

Built on first use from the launcher in tools/ferretdb (Go module proxy only), then started as a
child process. Never used in production: ENV=production requires MONGO_URL.

The local store belongs to its checkout (`start_local`, used by `python -m backend`):
- it dies with the process that started it, however that process dies (SIGKILL, OOM, a closed
  terminal): the kernel sends it SIGTERM when its parent goes (PR_SET_PDEATHSIG, Linux);
- its data directory holds a marker (`iaze-store.json`) with a random id and the address it
  listens on; the same id is stored in the store itself, and on connect the backend checks that
  the server is the process it just started (serverStatus.pid) and serves that id — a leftover or
  another checkout's FerretDB on the address is refused, never used;
- the address is chosen per data directory (a free port, recorded in the marker and reused while
  free), so two checkouts run side by side; a taken explicit FERRETDB_LISTEN gets a clear message.
"""

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from backend.core.config import STORE_MARKER, write_whole_file

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "tools" / "ferretdb"
BINARY = ROOT / "var" / "bin" / "ferretdb-launcher"


# One change to FerretDB itself, made to a copy of the module when the launcher is built (Go refuses
# an -overlay of a file in the module cache, so the build's go.mod points FerretDB at the copy).
# v1.24.2 pushes `{_id: <string|ObjectId>}` down to SQLite as `_ferretdb_sjson->'$._id' = ?`, while
# the unique index it creates on `_id` is on `_ferretdb_sjson->"_id"`: the same value, but SQLite
# uses an expression index only for the identical expression, so every `_id` look-up scanned the
# table. The look-up now uses the index's expression. Before this an index of the launcher's own,
# on the look-up's expression, was added once a second to every table; its keeper held a SQLite
# connection to every database file, and after FerretDB dropped a database and created one of the
# same name, that connection and the new database shared the old write-ahead log's files ("disk
# I/O error (522)", "file is not a database"; most likely also the store that stopped answering
# mid-suite on the CI machine, right after the backup tests drop and recreate scratch databases).
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
ID_LOOKUP_PATCH = (
    "internal/backends/sqlite/metadata/metadata.go",
    "IDColumn = DefaultColumn + \"->'$._id'\"",
    'IDColumn = DefaultColumn + `->"_id"`',
)
BUILD_DIR = ROOT / "var" / "build" / "ferretdb"


def _go(*args: str) -> str:
    done = subprocess.run(["go", *args], cwd=SOURCE_DIR, capture_output=True, text=True)
    if done.returncode != 0:  # say why (a CI log shows only what is printed)
        raise RuntimeError(f"go {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def _patched_module() -> Path:
    """A copy of the FerretDB module with ID_LOOKUP_PATCH applied; refuses a version where the
    patched line is not there exactly once (the patch would silently do nothing)."""
    _go("mod", "download", FERRETDB_MODULE)
    source = Path(_go("list", "-m", "-f", "{{.Dir}}", FERRETDB_MODULE))
    copy = BUILD_DIR / "FerretDB"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(source, copy, copy_function=shutil.copyfile)  # the cache's files are read-only
    for folder in (copy, *(d for d in copy.rglob("*") if d.is_dir())):
        folder.chmod(0o755)  # copytree copied the cache's read-only modes: the next build removes it
    relative, old, new = ID_LOOKUP_PATCH
    target = copy / relative
    text = target.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"{FERRETDB_MODULE} {relative} no longer has {old!r}: review ID_LOOKUP_PATCH")
    target.write_text(text.replace(old, new))
    return copy


def ensure_built() -> Path:
    sources = [*SOURCE_DIR.glob("*.go"), SOURCE_DIR / "go.mod", SOURCE_DIR / "go.sum", Path(__file__)]
    newest_source = max(p.stat().st_mtime for p in sources if p.exists())
    if BINARY.exists() and BINARY.stat().st_mtime >= newest_source:
        return BINARY
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the local FerretDB (tools/ferretdb); install Go or set MONGO_URL")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    print("building local FerretDB (first run downloads modules; a few minutes)...", file=sys.stderr, flush=True)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    module = _patched_module()
    modfile = BUILD_DIR / "go.mod"  # tools/ferretdb's, FerretDB replaced by the patched copy
    modfile.write_text((SOURCE_DIR / "go.mod").read_text() + f"\nreplace {FERRETDB_MODULE} => {module}\n")
    shutil.copyfile(SOURCE_DIR / "go.sum", BUILD_DIR / "go.sum")
    subprocess.run(["go", "build", "-v", f"-modfile={modfile}", "-o", str(BINARY), "."], cwd=SOURCE_DIR, check=True)
    print(f"built {BINARY}", file=sys.stderr, flush=True)
    return BINARY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(host: str, port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"FerretDB exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"FerretDB did not listen on {host}:{port} within {timeout}s")


PR_SET_PDEATHSIG = 1
# Looked up once, here: the child of a threaded parent should do as little as possible between
# fork and exec (no dlopen there).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies,
    then make sure it has not died already (the request only covers deaths after it). Linux
    delivers it when the *thread* that started the child ends: start stores from the thread that
    lives as long as they should (the main thread, as every caller does)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def start(listen: str, data_dir: str | os.PathLike[str], *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """FerretDB on `listen` serving `data_dir`, as a child that dies with this process. Its own
    session, so a Ctrl-C in the terminal reaches the backend, which then stops it in order."""
    binary = ensure_built()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    host, port = listen.rsplit(":", 1)
    if not port_is_free(host, int(port)):
        raise StoreUnavailable(taken_message(listen, Path(data_dir)))
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    parent = os.getpid()
    proc = subprocess.Popen(
        [str(binary), "-listen", listen, "-data", str(data_dir)],
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=lambda: _die_with_parent(parent),
    )
    wait_listening(host, int(port), proc=proc)
    return proc


class StoreUnavailable(RuntimeError):
    """The local store cannot be started or is not provably this data directory's."""


MARKER = STORE_MARKER
MARKER_DB = "iaze_local_store"  # the store's copy of the marker id
MARKER_ID = "marker"
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class LocalStore:
    proc: subprocess.Popen[bytes]
    listen: str
    store_id: str

    @property
    def url(self) -> str:
        return f"mongodb://{self.listen}/"


def port_is_free(host: str, port: int) -> bool:
    """Nothing listens there. SO_REUSEADDR as FerretDB (Go) binds with it: connections of a
    stopped store still in TIME_WAIT do not make the address taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise StoreUnavailable(f"{data_dir / MARKER} is not a store marker; it was edited by hand?")
    return data


def ensure_marker(data_dir: Path) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = read_marker(data_dir)
    if marker is not None:
        return marker
    fresh = {"id": secrets.token_hex(16), "listen": ""}
    with contextlib.suppress(FileExistsError):  # another start created it first: use theirs
        write_whole_file(data_dir / MARKER, json.dumps(fresh).encode(), exclusive=True)
    found = read_marker(data_dir)
    if found is None:
        raise StoreUnavailable(f"{data_dir / MARKER} vanished right after it was written")
    return found


def _server_owner(listen: str) -> str:
    """What answers on a taken address, for the message: this data dir's store, another one, or
    something that is not a local store at all."""
    try:
        with MongoClient[dict[str, Any]](
            f"mongodb://{listen}/", serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        ) as c:
            pid = c.admin.command("serverStatus").get("pid")
            doc = c[MARKER_DB].store.find_one({"_id": MARKER_ID})
    except PyMongoError:
        return "a process that does not answer as a MongoDB server"
    owner = f"store id {doc['id']}" if doc else "no store id"
    return f"a MongoDB-protocol server (pid {pid}, {owner})"


def taken_message(listen: str, data_dir: Path) -> str:
    return (
        f"cannot start the local FerretDB for {data_dir}: {listen} is taken by {_server_owner(listen)}. "
        "It may be another checkout's store, or one left over by a backend of an older version that "
        "did not stop it (end that process), or another program. Leave FERRETDB_LISTEN empty to pick a "
        "free port per data directory, or set it to a free address."
    )


def verify_store(url: str, data_dir: Path, *, expect_pid: int | None) -> str:
    """The server at `url` must be the FerretDB we started on `data_dir` (`expect_pid`) and must
    hold the data dir's marker id; a fresh store gets the id written once its process is proven.
    Returns the id; raises StoreUnavailable otherwise."""
    marker = read_marker(data_dir)
    if marker is None:
        raise StoreUnavailable(f"{data_dir} has no {MARKER}: not a local store directory of this project")
    with MongoClient[dict[str, Any]](url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000) as c:
        pid = c.admin.command("serverStatus").get("pid")
        if expect_pid is not None and pid != expect_pid:
            raise StoreUnavailable(
                f"{url} is served by pid {pid}, not by the FerretDB started for {data_dir} (pid {expect_pid})"
            )
        stored = c[MARKER_DB].store.find_one({"_id": MARKER_ID})
        if stored is None and expect_pid is not None:
            c[MARKER_DB].store.insert_one({"_id": MARKER_ID, "id": marker["id"], "data_dir": str(data_dir)})
            stored = c[MARKER_DB].store.find_one({"_id": MARKER_ID})
    if stored is None or stored.get("id") != marker["id"]:
        found = stored.get("id") if stored else None
        raise StoreUnavailable(
            f"the store at {url} holds store id {found!r}, but {data_dir / MARKER} says {marker['id']!r}: "
            "it is not this data directory's store"
        )
    return str(marker["id"])


def _choose_listen(configured: str, marker: dict[str, Any]) -> str:
    if configured:
        return configured
    recorded = str(marker.get("listen") or "")
    if recorded:
        host, port = recorded.rsplit(":", 1)
        if port_is_free(host, int(port)):
            return recorded
    return f"{DEFAULT_HOST}:{free_port()}"


def start_local(data_dir: Path, *, listen: str = "", log_path: Path | None = None) -> LocalStore:
    """This checkout's store (`python -m backend` without MONGO_URL); see the module docstring."""
    marker = ensure_marker(data_dir)
    chosen = _choose_listen(listen, marker)
    proc = start(chosen, data_dir, log_path=log_path)
    try:
        if proc.poll() is not None:
            raise StoreUnavailable(f"FerretDB exited with code {proc.returncode}; see {log_path}")
        store_id = verify_store(f"mongodb://{chosen}/", data_dir, expect_pid=proc.pid)
    except BaseException:
        stop(proc)
        raise
    if marker.get("listen") != chosen:
        write_whole_file(data_dir / MARKER, json.dumps({**marker, "listen": chosen}).encode(), exclusive=False)
    return LocalStore(proc, chosen, store_id)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
