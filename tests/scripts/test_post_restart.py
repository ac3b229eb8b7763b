"""deploy_check after a restart: every WhatsApp connection that was open is open again, asked from
the fake Evolution API (its own process), without a new QR code; the backend is ready; run as the
CLI operators run, against a real database and a real backend on a loopback port."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.devtools import ferretdb
from tests.factories import Tenant, make_tenant
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, settings, settings_overrides, wait_for
from tests.scripts.cli import Result, env_for, run_cli

__all__ = ["app", "backend_port", "evolution", "settings", "settings_overrides"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

NUMBERS = {"a": "5511911110001", "b": "5511922220002"}


@pytest.fixture(scope="module")
async def tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    return await make_tenant(client, admin_headers, agents=0)


async def _connection(client: httpx.AsyncClient, tenant: Tenant, instance: str) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/whatsapp-connections",
        json={
            "name": f"Loja {instance}",
            "provider": "evolution",
            "instance_name": instance,
            "default_department_id": tenant.departments[0]["id"],
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    conn: dict[str, Any] = r.json()
    return conn


@pytest.fixture(scope="module")
async def instances(app: Any, client: httpx.AsyncClient, tenant: Tenant, evolution: FakeEvolution) -> dict[str, str]:
    """Two connections scanned by two phones (open), one never scanned (connecting)."""
    names = {key: f"pr-{key}-{tenant.id[-6:]}" for key in ("a", "b", "idle")}
    for key, instance in names.items():
        await _connection(client, tenant, instance)
        if key in NUMBERS:
            await _state(evolution, instance, "open", owner=NUMBERS[key])
    return names


async def _state(evolution: FakeEvolution, instance: str, state: str, **extra: str) -> None:
    result = await evolution.control("POST", "state", {"instance": instance, "state": state, **extra})
    assert result["status_code"] == 200, result


def _env(mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, **extra: str) -> dict[str, str]:
    return env_for(
        mongo_url,
        db_name,
        EVOLUTION_BASE_URL=evolution.url,
        EVOLUTION_API_KEY=evolution.api_key,
        DEPLOY_CHECK_BACKEND_URL=f"http://127.0.0.1:{backend_port}",
        **extra,
    )


async def _snapshot(env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "before.json"
    res = await run_cli("scripts.deploy_check", "snapshot", "--out", str(path), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    return path, json.loads(path.read_text())


async def _verify(env: dict[str, str], tmp_path: Path, path: Path, *extra: str) -> Result:
    return await run_cli("scripts.deploy_check", "verify", "--against", str(path), *extra, env=env, cwd=tmp_path)


def _mine(snap: dict[str, Any], instances: dict[str, str]) -> dict[str, dict[str, Any]]:
    by_instance = {e["instance"]: e for e in snap["whatsapp"]["instances"]}
    return {key: by_instance[name] for key, name in instances.items()}


async def test_snapshot_records_each_connection_as_the_provider_reports_it(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    _, snap = await _snapshot(_env(mongo_url, db_name, evolution, backend_port), tmp_path)
    mine = _mine(snap, instances)
    assert (mine["a"]["state"], mine["a"]["number"]) == ("open", NUMBERS["a"])
    assert (mine["b"]["state"], mine["b"]["number"]) == ("open", NUMBERS["b"])
    assert (mine["idle"]["state"], mine["idle"]["number"]) == ("connecting", None)
    assert snap["whatsapp"]["asked"] is True and snap["backend_ready"] is True


async def test_open_before_and_open_after_the_restart_passes(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, evolution, backend_port)
    path, _ = await _snapshot(env, tmp_path)
    # The restart: Evolution reconnects each stored session (connecting), then it is open again.
    for key in ("a", "b"):
        await _state(evolution, instances[key], "connecting")
        await _state(evolution, instances[key], "open")
    res = await _verify(env, tmp_path, path, "--wait", "0")
    assert res.code == 0, res.output
    assert "ANTES" in res.stdout and "APÓS" in res.stdout
    for key in ("a", "b"):
        line = next(li for li in res.stdout.splitlines() if f"instância {instances[key]}" in li)
        assert NUMBERS[key] in line and "open" in line and "sem novo QR" in line, line
    assert "Backend /health/ready" in res.stdout and "n/a (sem mídia)" in res.stdout
    assert "OK" in res.stdout


async def test_verify_waits_for_a_session_that_is_still_reconnecting(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    """Right after a restart Evolution says `connecting` while it restores a valid session: the
    check must keep asking, not report a lost session. The instance turns open only once the
    check has already seen it connecting."""
    env = _env(mongo_url, db_name, evolution, backend_port)
    path, _ = await _snapshot(env, tmp_path)
    instance = instances["a"]
    await _state(evolution, instance, "connecting")
    asked_before = await _state_calls(evolution, instance)
    check = asyncio.create_task(_verify(env, tmp_path, path, "--wait", "300"))
    await wait_for(lambda: _asked_since(evolution, instance, asked_before), timeout=120)
    await _state(evolution, instance, "open")
    res = await check
    assert res.code == 0, res.output
    assert await _state_calls(evolution, instance) >= asked_before + 2  # asked again after connecting


async def _state_calls(evolution: FakeEvolution, instance: str) -> int:
    calls = await evolution.control("GET", "calls")
    return sum(1 for c in calls if c["path"] == f"/instance/connectionState/{instance}")


async def _asked_since(evolution: FakeEvolution, instance: str, before: int) -> bool:
    return await _state_calls(evolution, instance) > before


async def test_open_before_and_connecting_with_a_new_qr_after_fails_naming_the_number(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, evolution, backend_port)
    path, _ = await _snapshot(env, tmp_path)
    lost = instances["a"]
    # The session did not survive: Evolution starts over and shows a new QR code for it.
    await _state(evolution, lost, "connecting")
    qr = await evolution.control("POST", "qrcode", {"instance": lost})
    assert qr["status_code"] == 200, qr
    try:
        res = await _verify(env, tmp_path, path, "--wait", "0")
        assert res.code == 1, res.output
        assert "FAILED" in res.stdout
        problems = [li for li in res.stdout.splitlines() if li.strip().startswith("- WhatsApp connection")]
        assert len(problems) == 1, res.stdout
        assert f"number {NUMBERS['a']}, instance {lost}" in problems[0]
        assert "asking for a new QR code" in problems[0]
        assert NUMBERS["b"] not in "\n".join(problems)
        line = next(li for li in res.stdout.splitlines() if f"instância {lost}" in li)
        assert "connecting" in line and "novo QR" in line, line
    finally:
        await _state(evolution, lost, "open")


async def test_open_again_on_another_number_is_a_new_qr_and_fails(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, evolution, backend_port)
    path, _ = await _snapshot(env, tmp_path)
    await _state(evolution, instances["b"], "open", owner="5511933330003")
    try:
        res = await _verify(env, tmp_path, path, "--wait", "0")
        assert res.code == 1, res.output
        assert f"number {NUMBERS['b']}, instance {instances['b']}): open again but paired with another number" in (
            res.stdout
        )
        assert "5511933330003" in res.stdout
    finally:
        await _state(evolution, instances["b"], "open", owner=NUMBERS["b"])


async def test_backend_not_ready_and_provider_down_or_emptied_fail(
    instances: dict[str, str], mongo_url: str, db_name: str, evolution: FakeEvolution, backend_port: int, tmp_path: Path
) -> None:
    env = _env(mongo_url, db_name, evolution, backend_port)
    path, _ = await _snapshot(env, tmp_path)
    nobody = f"http://127.0.0.1:{ferretdb.free_port()}"
    res = await _verify(env, tmp_path, path, "--wait", "0", "--backend-url", nobody)
    assert res.code == 1, res.output
    assert f"backend {nobody}/health/ready: not ready" in res.stdout and "NOT READY" in res.stdout

    evolution.stop()
    try:
        res = await _verify(env, tmp_path, path, "--wait", "0")
        assert res.code == 1, res.output
        for key in ("a", "b"):
            assert f"instance {instances[key]}): was open, the provider did not answer" in res.stdout
    finally:
        evolution.start()  # same port, nothing kept: every instance is gone, as with a lost database
    res = await _verify(env, tmp_path, path, "--wait", "0")
    assert res.code == 1, res.output
    assert f"instance {instances['a']}): was open, the provider no longer has this instance" in res.stdout
    # A snapshot taken while the provider cannot tell says which connections it cannot cover.
    res = await run_cli("scripts.deploy_check", "snapshot", "--out", str(tmp_path / "b2.json"), env=env, cwd=tmp_path)
    assert res.code == 0, res.output
    assert "they will not be checked after the restart" in res.stderr
