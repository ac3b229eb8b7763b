"""The WhatsApp sessions (Evolution's instances directory) as a tar.gz with a manifest.

Evolution keeps one folder per instance under /evolution/instances; with its Redis cache off the
Baileys signal keys are small files there, rewritten while it runs (with the cache on they live in
Redis and the credentials, in every mode, in Evolution's PostgreSQL: DEPLOY_RULES.md §8).
Each file is read once, hashed and written into the tar from those same bytes, so the manifest
(path, size, sha256 of every file) always describes what the tar holds, even when Evolution
changes a file in the middle of the backup. A file that disappears between listing and reading
was being replaced by Evolution; it is left out and counted.

check() is the verify step: the tar's own checksum, then a full extraction into a scratch
directory compared file by file with the manifest. restore() puts a checked archive back into a
directory (the volume, with Evolution stopped): files of the archive are written, other files are
left as they are, and the directory's previous content is archived first.
"""

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from scripts.restore import sha256_of

SUFFIX = ".sessions.tar.gz"


@dataclass
class Written:
    archive: str
    sha256: str
    bytes: int
    files: list[dict[str, Any]]
    dirs: list[str]
    vanished: int

    def manifest(self, source: Path) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "source": str(source),
            "files": self.files,
            "dirs": self.dirs,
            "file_count": len(self.files),
            "total_bytes": sum(f["size"] for f in self.files),
            "vanished_while_reading": self.vanished,
        }


@dataclass
class Checked:
    problems: list[str] = field(default_factory=list)
    files: int = 0
    corrupt: bool = False  # the archive itself is missing, unreadable or not the one recorded

    @property
    def ok(self) -> bool:
        return not self.problems


def _info(name: str, st: os.stat_result, *, directory: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = st.st_mode & 0o7777
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    return info


def write(source: Path, dest: Path) -> Written:
    """tar.gz of everything under `source` (regular files and directories; paths relative to it)."""
    if not source.is_dir():
        raise FileNotFoundError(f"sessions directory {source} does not exist or is not a directory")
    partial = dest.with_name(dest.name + ".partial")
    files: list[dict[str, Any]] = []
    dirs: list[str] = []
    vanished = 0
    with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for root, dirnames, filenames in os.walk(source):
            dirnames.sort()
            here = Path(root)
            for d in dirnames:
                rel = (here / d).relative_to(source).as_posix()
                try:
                    tar.addfile(_info(rel, (here / d).stat(), directory=True))
                except FileNotFoundError:
                    vanished += 1
                    continue
                dirs.append(rel)
            for name in sorted(filenames):
                path = here / name
                rel = path.relative_to(source).as_posix()
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode):
                        continue  # Baileys writes plain files only; nothing else is a session
                    data = path.read_bytes()
                except FileNotFoundError:
                    vanished += 1
                    continue
                info = _info(rel, st, directory=False)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    digest = sha256_of(partial)
    partial.rename(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    return Written(dest.name, digest, dest.stat().st_size, files, dirs, vanished)


def _extract(path: Path, into: Path) -> None:
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            p = PurePosixPath(member.name)
            if p.is_absolute() or ".." in p.parts or not (member.isfile() or member.isdir()):
                raise tarfile.ReadError(f"unexpected member {member.name!r}")
        tar.extractall(into, filter="data")


def _compare(root: Path, manifest: dict[str, Any], result: Checked) -> None:
    expected = {f["path"]: f for f in manifest["files"]}
    found = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    for rel in sorted(set(expected) - set(found)):
        result.problems.append(f"sessions: {rel} is in the manifest but not in the archive")
    for rel in sorted(set(found) - set(expected)):
        result.problems.append(f"sessions: {rel} is in the archive but not in the manifest")
    for rel in sorted(set(expected) & set(found)):
        data = found[rel].read_bytes()
        want = expected[rel]
        if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
            result.problems.append(
                f"sessions: {rel} differs from the manifest ({len(data)} bytes, expected {want['size']})"
            )
        else:
            result.files += 1


def check(backup_dir: Path, manifest: dict[str, Any], *, keep_in: Path | None = None) -> Checked:
    """Checksum, then extract into a scratch directory (or `keep_in`) and compare every file."""
    result = Checked()
    path = backup_dir / manifest["archive"]
    if not path.is_file():
        result.corrupt = True
        result.problems.append(f"sessions: {manifest['archive']} is missing")
        return result
    if sha256_of(path) != manifest["sha256"]:
        result.corrupt = True
        result.problems.append(f"sessions: {manifest['archive']} does not match its manifest's sha256")
        return result

    def into(target: Path) -> None:
        try:
            _extract(path, target)
        except (tarfile.TarError, EOFError, OSError) as exc:
            result.corrupt = True
            result.problems.append(f"sessions: {manifest['archive']} does not extract: {exc}")
            return
        _compare(target, manifest, result)

    if keep_in is not None:
        into(keep_in)
    else:
        with tempfile.TemporaryDirectory(prefix="iaze-sessions-verify-") as scratch:
            into(Path(scratch))
    return result


def restore(backup_dir: Path, manifest: dict[str, Any], target: Path, *, stamp: str) -> tuple[Checked, str | None]:
    """Checks the archive, keeps a copy of the target's current content, then writes every file of
    the archive into `target`. Returns the check and the name of the copy (None: target was empty)."""
    with tempfile.TemporaryDirectory(prefix="iaze-sessions-restore-") as scratch:
        checked = check(backup_dir, manifest, keep_in=Path(scratch))
        if not checked.ok:
            return checked, None
        target.mkdir(parents=True, exist_ok=True)
        before: str | None = None
        if any(target.iterdir()):
            copy = write(target, backup_dir / f"pre-restore-{stamp}{SUFFIX}")
            # Restorable like any backup's sessions: restore-sessions --manifest <this file>.
            (backup_dir / f"pre-restore-{stamp}.sessions.manifest.json").write_text(
                json.dumps({"made_by": "iaze-restore-sessions", "sessions": copy.manifest(target)}, indent=2) + "\n"
            )
            before = copy.archive
        for rel in manifest["dirs"]:
            (target / rel).mkdir(parents=True, exist_ok=True)
        for f in manifest["files"]:
            dest = target / f["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = Path(scratch) / f["path"]
            tmp = dest.with_name(dest.name + ".iaze-restoring")
            tmp.write_bytes(src.read_bytes())
            os.chmod(tmp, src.stat().st_mode & 0o7777)
            tmp.replace(dest)
    after = Checked()
    _compare_subset(target, manifest, after)
    return after, before


def _compare_subset(root: Path, manifest: dict[str, Any], result: Checked) -> None:
    """After a restore: every file of the archive is in `root`, byte-identical (others may exist)."""
    for f in manifest["files"]:
        p = root / f["path"]
        if not p.is_file():
            result.problems.append(f"sessions: {f['path']} was not restored")
            continue
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            result.problems.append(f"sessions: {f['path']} differs after the restore")
        else:
            result.files += 1
