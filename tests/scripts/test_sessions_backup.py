"""The WhatsApp sessions (Evolution's instances directory) in every backup: tar.gz + checksum +
manifest, verified by extraction, restored byte-identical; the CLI against a real database."""

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts import sessions
from tests.factories import Tenant, make_tenant, make_ticket
from tests.scripts.cli import env_for, run_cli

ASYNC = pytest.mark.asyncio(loop_scope="session")


def _instances(root: Path) -> dict[str, bytes]:
    """A directory shaped like Evolution's: one folder per instance id with Baileys' key files."""
    files = {
        "cm1abc/creds.json": b'{"noiseKey": {"private": "AAAA"}, "me": {"id": "5511988887777:3@s.whatsapp.net"}}',
        "cm1abc/pre-key-1.json": os.urandom(700),
        "cm1abc/session-5511977776666.0.json": bytes(range(256)) * 3,
        "cm1abc/app-state-sync-key-AAAAAJ2V.json": b"",
        "cm2def/creds.json": '{"nome": "sessão ç"}'.encode(),
        "cm2def/nested/deeper/sender-key-x.json": os.urandom(5000),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "cm3-empty").mkdir()
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tar_of_a_directory_round_trips_byte_identical_with_its_manifest(tmp_path: Path) -> None:
    src, out, back = tmp_path / "instances", tmp_path / "backups", tmp_path / "restored"
    src.mkdir()
    out.mkdir()
    files = _instances(src)
    written = sessions.write(src, out / f"b{sessions.SUFFIX}")
    manifest = written.manifest(src)

    # The manifest names every file with its size and sha256, computed here independently.
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        rel: (len(data), hashlib.sha256(data).hexdigest()) for rel, data in files.items()
    }
    assert "cm3-empty" in manifest["dirs"]
    tar_path = out / written.archive
    assert manifest["sha256"] == hashlib.sha256(tar_path.read_bytes()).hexdigest()
    assert (out / f"{written.archive}.sha256").read_text() == f"{manifest['sha256']}  {written.archive}\n"
    assert not list(out.glob("*.partial"))
    # A plain tar.gz: any tar reads it (the seed's `tar -xzf` restore works on it too).
    with tarfile.open(tar_path, "r:gz") as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == sorted(files)

    checked = sessions.check(out, manifest)
    assert checked.ok and checked.files == len(files), checked.problems

    result, before = sessions.restore(out, manifest, back, stamp="t1")
    assert result.ok and before is None
    assert _tree(back) == files
    assert (back / "cm3-empty").is_dir()


def test_a_file_rewritten_during_the_backup_is_archived_as_read(tmp_path: Path, monkeypatch: Any) -> None:
    """Evolution rewrites key files while it runs: the bytes in the tar are the bytes hashed,
    whatever happens to the file right after it was read; a file deleted before its turn is left out."""
    src, out = tmp_path / "instances", tmp_path / "backups"
    src.mkdir()
    out.mkdir()
    files = _instances(src)
    real_read = Path.read_bytes

    def racing_read(self: Path) -> bytes:
        data = real_read(self)
        if self.name == "creds.json" and self.parent.name == "cm1abc":
            (self.parent / "pre-key-1.json").unlink()  # Evolution rotates a pre-key in between
            self.write_bytes(b"rewritten after the read")
        return data

    monkeypatch.setattr(Path, "read_bytes", racing_read)
    written = sessions.write(src, out / f"b{sessions.SUFFIX}")
    monkeypatch.undo()
    manifest = written.manifest(src)
    by_path = {f["path"]: f for f in manifest["files"]}
    assert by_path["cm1abc/creds.json"]["sha256"] == hashlib.sha256(files["cm1abc/creds.json"]).hexdigest()
    assert "cm1abc/pre-key-1.json" not in by_path and manifest["vanished_while_reading"] == 1
    assert sessions.check(out, manifest).ok


def _backup(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, bytes]]:
    src, out = tmp_path / "instances", tmp_path / "backups"
    src.mkdir()
    out.mkdir()
    files = _instances(src)
    return out, sessions.write(src, out / f"b{sessions.SUFFIX}").manifest(src), files


def test_verify_detects_a_corrupted_tar(tmp_path: Path) -> None:
    out, manifest, _ = _backup(tmp_path)
    path = out / manifest["archive"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    checked = sessions.check(out, manifest)
    assert checked.corrupt and checked.problems == [f"sessions: {path.name} does not match its manifest's sha256"]


def test_verify_detects_a_truncated_tar_even_when_its_checksum_was_rewritten(tmp_path: Path) -> None:
    """The checksum alone is not the check: extraction must read the whole archive back."""
    out, manifest, _ = _backup(tmp_path)
    path = out / manifest["archive"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    checked = sessions.check(out, manifest)
    assert checked.corrupt and not checked.ok
    assert checked.problems[0].startswith(f"sessions: {path.name} does not extract:")


def test_verify_compares_every_extracted_file_with_the_manifest(tmp_path: Path) -> None:
    out, manifest, _ = _backup(tmp_path)
    path = out / manifest["archive"]
    # A well-formed tar.gz whose content is not what the manifest says (one file changed, one
    # missing), with a checksum to match: only the file-by-file comparison can tell.
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as tar:
        for m, data in members:
            if m.name == "cm2def/creds.json":
                continue
            if m.name == "cm1abc/creds.json":
                data = b'{"noiseKey": "someone else"}'
                m.size = len(data)
            tar.addfile(m, None if data is None else io.BytesIO(data))
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    checked = sessions.check(out, manifest)
    assert not checked.ok and not checked.corrupt
    assert "sessions: cm2def/creds.json is in the manifest but not in the archive" in checked.problems
    assert any(p.startswith("sessions: cm1abc/creds.json differs from the manifest") for p in checked.problems)


def test_restore_keeps_what_the_directory_held_and_deletes_nothing(tmp_path: Path) -> None:
    out, manifest, files = _backup(tmp_path)
    target = tmp_path / "instances"
    (target / "cm1abc" / "creds.json").write_bytes(b"damaged")
    (target / "cm9new" / "creds.json").parent.mkdir()
    (target / "cm9new" / "creds.json").write_bytes(b"an instance created after the backup")
    tree_before = _tree(target)
    result, before = sessions.restore(out, manifest, target, stamp="t2")
    assert result.ok and before == f"pre-restore-t2{sessions.SUFFIX}"
    tree = _tree(target)
    assert {k: tree[k] for k in files} == files
    assert tree["cm9new/creds.json"] == b"an instance created after the backup"
    with tarfile.open(out / before, "r:gz") as tar:
        assert tar.extractfile("cm1abc/creds.json").read() == b"damaged"  # type: ignore[union-attr]
    # That copy restores like a backup (an operator who restored the wrong archive can go back).
    copy = json.loads((out / "pre-restore-t2.sessions.manifest.json").read_text())["sessions"]
    undo, _ = sessions.restore(out, copy, tmp_path / "undo", stamp="t3")
    assert undo.ok and _tree(tmp_path / "undo") == {**files, **tree_before}


# ---- the CLI: backup run / verify / list / restore-sessions with BACKUP_EVOLUTION_INSTANCES_DIR ----


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    t = await make_tenant(client, admin_headers, agents=1)
    await make_ticket(client, t, message="oi")
    return t


@ASYNC
async def test_backup_run_and_verify_cover_the_sessions(
    tenant: Tenant, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    src, out = tmp_path / "instances", tmp_path / "backups"
    src.mkdir()
    files = _instances(src)
    env = env_for(
        mongo_url, db_name, BACKUP_DIR=str(out), BACKUP_TOOL="python", BACKUP_EVOLUTION_INSTANCES_DIR=str(src)
    )
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    [manifest_path] = sorted(out.glob("*.manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    sm = manifest["sessions"]
    # Beside the mongodump archive, same base name: retention and verify treat them as one backup.
    assert sm["archive"] == manifest["archive"].replace(".archive.gz", sessions.SUFFIX)
    assert sm["file_count"] == len(files) and sm["source"] == str(src)
    assert (out / f"{sm['archive']}.sha256").is_file()

    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 0 and "OK" in res.stdout, res.output
    verified = json.loads(manifest_path.with_name(manifest_path.name.replace("manifest", "verified")).read_text())
    assert verified["sessions"] == {"ok": True, "files": len(files), "problems": []}
    res = await run_cli("scripts.backup", "list", env=env, cwd=tmp_path)
    assert res.code == 0 and str(len(files)) in res.stdout, res.output

    # The sessions are lost (the volume recreated empty); restore-sessions puts them back.
    restored = tmp_path / "new-volume"
    res = await run_cli("scripts.backup", "restore-sessions", "--into", str(restored), env=env, cwd=tmp_path)
    assert res.code == 0 and f"{len(files)} session files" in res.stdout, res.output
    assert _tree(restored) == files

    # A truncated sessions archive fails verify with the file error code, naming it.
    tar_path = out / sm["archive"]
    tar_path.write_bytes(gzip.compress(b"not the archive"))
    res = await run_cli("scripts.backup", "verify", env=env, cwd=tmp_path)
    assert res.code == 4, res.output
    assert f"{sm['archive']} does not match its manifest's sha256" in res.output
    res = await run_cli("scripts.backup", "restore-sessions", "--into", str(restored), env=env, cwd=tmp_path)
    assert res.code == 4 and "was not restored" in res.stdout, res.output


@ASYNC
async def test_a_missing_sessions_directory_fails_before_writing_anything(
    tenant: Tenant, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    env = env_for(
        mongo_url,
        db_name,
        BACKUP_DIR=str(out),
        BACKUP_TOOL="python",
        BACKUP_EVOLUTION_INSTANCES_DIR=str(tmp_path / "not-mounted"),
    )
    res = await run_cli("scripts.backup", "run", env=env, cwd=tmp_path)
    assert res.code == 4 and "is not a directory" in res.stderr, res.output
    assert not out.exists() or not any(out.iterdir())


@ASYNC
async def test_retention_deletes_a_backups_sessions_with_it_and_nothing_else(
    tenant: Tenant, mongo_url: str, db_name: str, tmp_path: Path
) -> None:
    src, out = tmp_path / "instances", tmp_path / "backups"
    src.mkdir()
    _instances(src)
    env = env_for(
        mongo_url, db_name, BACKUP_DIR=str(out), BACKUP_TOOL="python", BACKUP_EVOLUTION_INSTANCES_DIR=str(src)
    )
    for _ in range(2):
        res = await run_cli("scripts.backup", "run", "--no-prune", env=env, cwd=tmp_path)
        assert res.code == 0, res.output
    # The copy a restore keeps of the volume's previous content is not a backup: never pruned.
    res = await run_cli("scripts.backup", "restore-sessions", "--into", str(src), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    [kept_copy] = out.glob(f"pre-restore-*{sessions.SUFFIX}")
    newest = json.loads(sorted(out.glob("iaze-*.manifest.json"))[-1].read_text())
    res = await run_cli("scripts.backup", "prune", "--keep-daily", "0", "--keep-weekly", "0", env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert sorted(p.name for p in out.glob(f"iaze-*{sessions.SUFFIX}")) == [newest["sessions"]["archive"]]
    assert sorted(p.name for p in out.glob(f"iaze-*{sessions.SUFFIX}.sha256")) == [
        newest["sessions"]["archive"] + ".sha256"
    ]
    assert kept_copy.exists()
    copy_manifest = kept_copy.with_name(kept_copy.name.replace(".tar.gz", ".manifest.json"))
    back = tmp_path / "from-the-copy"
    args = ("restore-sessions", "--manifest", str(copy_manifest), "--into", str(back))
    res = await run_cli("scripts.backup", *args, env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert _tree(back) == _tree(src)
