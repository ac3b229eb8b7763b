"""Evolution's Redis in every backup: with CACHE_REDIS_ENABLED (as in compose) Evolution v2 keeps
each WhatsApp session's Baileys signal keys there, one hash per instance
(`<CACHE_REDIS_PREFIX_KEY>:instance:<instance id>`, a field per key). The credentials are in its
PostgreSQL (scripts/evolution_db.py); the two together are the session.

dump():    every hash matching the pattern, read with HGETALL and written as one JSON line per key
           into a gzip file (.partial until complete), checksummed; the manifest holds each key's
           field count and a sha256 of its content.
check():   the checksum, then the whole file read back and every key compared with the manifest.
restore(): checked first; writes only keys the target does not have (a key already there, e.g. a
           session that kept running, is left exactly as it is). Nothing is deleted.
"""

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from scripts.restore import sha256_of

SUFFIX = ".evolution-redis.jsonl.gz"
DEFAULT_PATTERN = "evolution:instance:*"


@dataclass
class Checked:
    problems: list[str] = field(default_factory=list)
    keys: int = 0
    corrupt: bool = False
    kept: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _text(b: bytes | str) -> str:
    # Evolution stores JSON text; surrogateescape round-trips any other byte exactly.
    return b if isinstance(b, str) else b.decode("utf-8", errors="surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", errors="surrogateescape")


def _digest(fields: dict[str, str]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)


def dump(url: str, pattern: str, dest: Path) -> dict[str, Any]:
    client = _client(url)
    partial = dest.with_name(dest.name + ".partial")
    keys: dict[str, dict[str, Any]] = {}
    skipped = 0
    try:
        with gzip.open(partial, "wt", encoding="ascii") as fh:
            for raw_key in sorted(client.scan_iter(match=pattern, count=500)):
                if client.type(raw_key) != b"hash":
                    skipped += 1  # the auth state is hashes only; anything else is cache
                    continue
                fields = {_text(k): _text(v) for k, v in client.hgetall(raw_key).items()}
                if not fields:
                    continue  # deleted between SCAN and HGETALL: nothing to keep
                key = _text(raw_key)
                fh.write(json.dumps({"key": key, "fields": fields}, sort_keys=True, ensure_ascii=True) + "\n")
                keys[key] = {"fields": len(fields), "sha256": _digest(fields)}
    finally:
        client.close()
    digest = sha256_of(partial)
    partial.rename(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    return {
        "archive": dest.name,
        "sha256": digest,
        "bytes": dest.stat().st_size,
        "pattern": pattern,
        "keys": keys,
        "key_count": len(keys),
        "skipped_not_hash": skipped,
    }


def _read(path: Path) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    with gzip.open(path, "rt", encoding="ascii") as fh:
        for line in fh:
            entry = json.loads(line)
            found[entry["key"]] = entry["fields"]
    return found


def check(backup_dir: Path, manifest: dict[str, Any]) -> tuple[Checked, dict[str, dict[str, str]]]:
    result = Checked()
    path = backup_dir / manifest["archive"]
    if not path.is_file() or sha256_of(path) != manifest["sha256"]:
        result.corrupt = True
        result.problems.append(f"evolution redis: {manifest['archive']} is missing or does not match its sha256")
        return result, {}
    try:
        found = _read(path)
    except (OSError, EOFError, ValueError, KeyError) as exc:
        result.corrupt = True
        result.problems.append(f"evolution redis: {manifest['archive']} does not read back: {exc}")
        return result, {}
    expected: dict[str, dict[str, Any]] = manifest["keys"]
    for key in sorted(set(expected) - set(found)):
        result.problems.append(f"evolution redis: {key} is in the manifest but not in the archive")
    for key in sorted(set(found) - set(expected)):
        result.problems.append(f"evolution redis: {key} is in the archive but not in the manifest")
    for key in sorted(set(found) & set(expected)):
        if _digest(found[key]) != expected[key]["sha256"]:
            result.problems.append(f"evolution redis: {key} differs from the manifest")
        else:
            result.keys += 1
    return result, found


def restore(backup_dir: Path, manifest: dict[str, Any], url: str) -> Checked:
    checked, found = check(backup_dir, manifest)
    if not checked.ok:
        return checked
    after = Checked()
    client = _client(url)
    try:
        for key, fields in sorted(found.items()):
            if client.exists(_bytes(key)):
                after.kept.append(key)
                continue
            client.hset(_bytes(key), mapping={_bytes(f): _bytes(v) for f, v in fields.items()})
            back = {_text(k): _text(v) for k, v in client.hgetall(_bytes(key)).items()}
            if _digest(back) != manifest["keys"][key]["sha256"]:
                after.problems.append(f"evolution redis: {key} differs after the restore")
            else:
                after.keys += 1
    finally:
        client.close()
    return after
