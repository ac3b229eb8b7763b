"""The platform admin's tenant lifecycle, a tenant's agents, settings, suspension and its people's
logins and password changes while the store loses one write, and with a competitor let in between
two of a request's writes.

The backend reaches the store through a relay (tests/tcp_relay.py) that stalls the one connection
carrying a chosen write: the command never runs (`lose="request"`) or it runs and its answer never
comes back (`lose="reply"`); with MONGO_SOCKET_TIMEOUT_MS the request then fails after 1.5 s (503
"the database did not answer; retry", over the real port). Then the person does what a person
does: clicks again, with the same form (or, where a test says so, a corrected one).

The writes, in the order they are made:
- A reseller's creation (resellers.service.create): the owner's email claim ("email:<email>",
  `email_claim`, natural_keys insert), the tenant's id claim ("reseller-owner:<owner id>",
  `owner_key`), the tenant's ticket counters (`counters`, ticket_counts insert), the tenant
  (`reseller`, resellers insert), its settings (`config`, reseller_configs insert), the owner user
  (`owner`, users insert).
- An agent's creation (users.service.create_login_user): the email claim (`email_claim`), the user
  (`user`).
- A suspension or reactivation (resellers.service.update): the tenant's `active` (and, for a
  suspension, its token epoch) in one update.
- A settings save (resellers.service.update_config): one update of the config.
- A password change (auth.service.change_password): the throttle's slot, the user's new hash and
  token version in one update conditional on the version read (`user`, users findAndModify),
  then the throttle's credits (`credit`).
- A login (auth.service.login): the throttle's slot (`slot`), then its credits (`credit`).

The end state, read past the relay (`direct`), must hold whatever was lost: one tenant with one
owner who logs in with the password given, never a tenant without its owner (nor an owner or an
email claim without its tenant); one agent per email; a suspension that ends every session of
before it, lets no one in while it lasts, keeps every WhatsApp message that arrives meanwhile and
shows them once it is lifted; the settings the API answers acted on by every backend process
within its SETUP_CACHE_SECONDS; after a password change, the old or the new password working,
never neither, and the sessions of before ended; a login's lost write never locking its user out
beyond the throttle's window, nor opening the throttle.

Competitors are let in deterministically: the click loses a write (so it stops between two writes
and answers 503), the competitor runs to its end, then the click is repeated; or, for two requests
"at one moment", the first is held in-process between its email claim and its user insert (a slow
store that does answer) while the second runs to its end; two password changes at one moment, the
first held between its check of the current password and its write."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.auth import throttle
from backend.core.security import verify_password
from backend.resellers.service import OWNER_KEY
from backend.users import repository as users_repository
from backend.users import service as users_service
from tests.factories import API, Tenant, collect_pages, make_tenant, unique, unique_phone
from tests.fakes.harness import FakeEvolution, app, backend_port, evolution, make_connection, settings
from tests.outbound.helpers import held_ticket
from tests.realtime.conftest import Server, start_server
from tests.tcp_relay import Lose, StoreProxy, command_marker, relayed, string_element, unanswered
from tests.webhooks.helpers import settled

__all__ = ["app", "backend_port", "evolution", "settings"]

WAIT = 30.0  # a trap's springing, a delivery's processing (a loaded 2-core box)
LOSSES: list[Lose] = ["request", "reply"]
CREATE_WRITES = ["email_claim", "owner_key", "counters", "reseller", "config", "owner"]
AGENT_WRITES = ["email_claim", "user"]
ADDRESS = "127.0.0.1"  # the browser's address as the backend sees it (no trusted proxy)
OWNER_PASSWORD = "owner-pass-1"
AGENT_PASSWORD = "agent-pass-1"
PEER_CACHE = 2.0  # the second process's SETUP_CACHE_SECONDS


@pytest.fixture(scope="module")
def settings_overrides(store_relay: StoreProxy) -> dict[str, Any]:
    return {
        **relayed(store_relay),
        "WEBHOOK_BACKOFF_BASE_SECONDS": 0.1,
        # Every request of the module comes from one address: its failed logins (refused during a
        # suspension, an old password tried) must not add up to the per-address lock across tests.
        "LOGIN_MAX_FAILURES_PER_ADDRESS": 10_000,
    }


class ThrottleClock:
    """What the login throttle reads as `time.time()`: a test moves `now` to end a window."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def throttle_clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> ThrottleClock:
    """The throttle's clock at the start of a fresh window, where it stays unless the test moves it
    (a test that crossed a window's end midway would see its counts reset)."""
    window = settings.LOGIN_WINDOW_SECONDS
    clock = ThrottleClock((int(time.time() // window) + 1) * window + 1)
    monkeypatch.setattr(throttle, "time", clock)
    return clock


@pytest.fixture(scope="module")
async def company(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    """A tenant whose owner hires agents (one department)."""
    return await make_tenant(client, admin_headers, departments=1, agents=0)


@pytest.fixture(scope="module")
async def rival(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Tenant:
    """Another tenant, hiring at the same moment."""
    return await make_tenant(client, admin_headers, departments=1, agents=0)


# -- clicks, traps and holds ------------------------------------------------------------------------


async def _sprung(sprung: asyncio.Event, click: "asyncio.Task[httpx.Response]", what: str) -> None:
    """Waits until the trap sprang (or the click answered without it: a failure naming what)."""
    waiter = asyncio.ensure_future(sprung.wait())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait({click, waiter}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not sprung.is_set():
        answer = (await click).text if click.done() else "still under way"
        raise AssertionError(f"the trap on the {what} never sprang (the click answered {answer})")


async def _lost_click(
    proxy: StoreProxy,
    send: Callable[[], Awaitable[httpx.Response]],
    markers: tuple[bytes, ...],
    *,
    lose: Lose,
    what: str,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> httpx.Response:
    """The click loses the write carrying `markers`: it answers 503. `meanwhile`: run once the
    write was swallowed (or ran unanswered), while the click hangs."""
    sprung = proxy.stall_next(*markers, lose=lose)
    click = asyncio.ensure_future(send())
    await _sprung(sprung, click, what)
    if meanwhile is not None:
        await meanwhile()
    first = await click
    assert unanswered(first), f"the {what} was lost ({lose}) and the click answered {first.status_code}: {first.text}"
    return first


@dataclass
class Hold:
    """One call held in-process until `release()`: `reached` once it is held."""

    reached: asyncio.Event
    release_: asyncio.Event

    def release(self) -> None:
        self.release_.set()

    async def caught(self, click: "asyncio.Task[httpx.Response]", what: str) -> None:
        await _sprung(self.reached, click, what)


def _hold() -> Hold:
    return Hold(asyncio.Event(), asyncio.Event())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(f"{API}/auth/login", json={"email": email, "password": password})


async def _signed_in(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    r = await _login(http, email, password)
    assert r.status_code == 200, (email, r.status_code, r.text)
    return _bearer(str(r.json()["access_token"]))


async def _me(http: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await http.get(f"{API}/auth/me", headers=headers)).status_code


@contextlib.asynccontextmanager
async def _from_address(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser elsewhere (its own address, so its logins count apart)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


# -- a reseller's creation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewTenant:
    """What the admin types in: the company's name, its owner's email and password."""

    name: str
    email: str
    password: str = OWNER_PASSWORD

    @property
    def body(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "password": self.password}


def _new_tenant() -> NewTenant:
    return NewTenant(unique("Revenda "), f"{unique('owner')}@example.com")


async def _create(browser: httpx.AsyncClient, admin: dict[str, str], t: NewTenant) -> httpx.Response:
    return await browser.post(f"{API}/resellers", json=t.body, headers=admin, timeout=60)


def _create_markers(write: str, t: NewTenant) -> tuple[bytes, ...]:
    """The bytes only the chosen write of `t`'s creation carries (one creation runs at a time)."""
    markers: dict[str, tuple[bytes, ...]] = {
        "email_claim": (command_marker("insert", "natural_keys"), string_element("_id", f"email:{t.email}")),
        "owner_key": (command_marker("insert", "natural_keys"), f"{OWNER_KEY}:".encode()),
        "counters": (command_marker("insert", "ticket_counts"), b"\x08complete\x00\x01"),
        "reseller": (command_marker("insert", "resellers"), string_element("owner_email", t.email)),
        "config": (command_marker("insert", "reseller_configs"), string_element("company_name", t.name)),
        "owner": (command_marker("insert", "users"), string_element("email", t.email)),
    }
    return markers[write]


async def _owner_stored(direct: Any, email: str) -> bool:
    return await direct.users.find_one({"email": email}) is not None


async def _every_tenant_of(direct: Any, email: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = await direct.resellers.find({"owner_email": email}).to_list(None)
    return docs


async def _no_half_tenant(direct: Any, browser: httpx.AsyncClient, admin: dict[str, str], email: str) -> None:
    """Every tenant stored (and listed to the admin) for `email` has its owner: a reseller user of
    that very tenant."""
    for reseller in await _every_tenant_of(direct, email):
        owner = await direct.users.find_one({"_id": reseller["owner_id"]})
        shape = None if owner is None else (owner["role"], owner.get("reseller_id"), owner.get("email"))
        assert shape == ("reseller", reseller["_id"], email), (
            f"the tenant {reseller['_id']} ({reseller['name']}, active={reseller.get('active', True)}) is "
            f"stored for {email} and its owner {reseller['owner_id']} is {shape}"
        )
    listed = await collect_pages(browser, admin, f"{API}/resellers")
    shown = [r["id"] for r in listed if r["owner_email"] == email]
    assert sorted(shown) == sorted(r["_id"] for r in await _every_tenant_of(direct, email)), shown


async def _one_usable_tenant(
    client: httpx.AsyncClient, direct: Any, admin: dict[str, str], t: NewTenant
) -> dict[str, Any]:
    """Exactly one tenant for `t`, whole (owner, claims, settings, counters), as the admin typed it,
    and usable: its owner logs in with the password given and sets up a department."""
    tenants = await _every_tenant_of(direct, t.email)
    assert len(tenants) == 1, f"{len(tenants)} tenants for {t.email}: {tenants}"
    (reseller,) = tenants
    users = await direct.users.find({"email": t.email}).to_list(None)
    assert [u["_id"] for u in users] == [reseller["owner_id"]], (reseller, users)
    owner = users[0]
    assert (owner["role"], owner["reseller_id"], owner["active"]) == ("reseller", reseller["_id"], True), owner
    claim = await direct.natural_keys.find_one({"_id": f"email:{t.email}"})
    assert claim is not None and claim["target"] == owner["_id"], claim
    tenant_key = await direct.natural_keys.find_one({"_id": f"{OWNER_KEY}:{owner['_id']}"})
    assert tenant_key is not None and tenant_key["target"] == reseller["_id"], tenant_key
    configs = await direct.reseller_configs.find({"reseller_id": reseller["_id"]}).to_list(None)
    assert [c["_id"] for c in configs] == [reseller["_id"]], configs
    totals = await direct.ticket_counts.find_one({"_id": reseller["_id"]})
    assert totals is not None and totals.get("complete") is True, totals

    r = await client.get(f"{API}/resellers/{reseller['_id']}", headers=admin)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (shown["name"], shown["owner_email"], shown["owner_id"], shown["active"]) == (
        t.name,
        t.email,
        owner["_id"],
        True,
    ), shown
    headers = await _signed_in(client, t.email, t.password)
    me = (await client.get(f"{API}/auth/me", headers=headers)).json()
    assert (me["id"], me["role"], me["reseller_id"]) == (owner["_id"], "reseller", reseller["_id"]), me
    config = await client.get(f"{API}/reseller-config", headers=headers)
    assert config.status_code == 200 and config.json()["reseller_id"] == reseller["_id"], config.text
    r = await client.post(f"{API}/departments", json={"name": unique("Depto ")}, headers=headers)
    assert r.status_code == 201, r.text
    return reseller


async def _counts(direct: Any) -> dict[str, int]:
    return {
        name: int(await direct[name].count_documents({}))
        for name in ("resellers", "reseller_configs", "users", "natural_keys", "ticket_counts")
    }


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", CREATE_WRITES)
async def test_a_reseller_create_that_loses_a_write_ends_with_one_whole_tenant_once_repeated(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The admin creates a reseller; the creation loses one write (503) and the admin clicks again
    with the same form: one whole, usable tenant. The repeat answers 201 with it, or 409 only when
    the lost attempt had already stored the owner; a third click changes nothing."""
    t = _new_tenant()
    await _lost_click(
        store_proxy,
        lambda: _create(browser, admin_headers, t),
        _create_markers(write, t),
        lose=lose,
        what=f"create's {write}",
    )
    owner_there = await _owner_stored(direct, t.email)
    again = await _create(browser, admin_headers, t)
    if again.status_code == 409:
        assert owner_there, f"the repeat was refused though no owner was stored: {again.text}"
        assert "email" in str(again.json()["detail"]), again.text
    else:
        assert again.status_code == 201, again.text
    reseller = await _one_usable_tenant(client, direct, admin_headers, t)
    if again.status_code == 201:
        body = again.json()
        assert (body["id"], body["owner_id"], body["name"]) == (reseller["_id"], reseller["owner_id"], t.name), body

    before = await _counts(direct)
    third = await _create(browser, admin_headers, t)
    assert third.status_code == 409, third.text
    assert await _counts(direct) == before


async def test_a_repeated_create_whose_owner_was_stored_answers_with_the_tenant_it_made(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    store_proxy: StoreProxy,
) -> None:
    """The last write of the creation (the owner) ran and its answer was lost: the tenant is whole.
    The admin's repeat must say so: 201 with that tenant, or a 409 naming it (its id)."""
    t = _new_tenant()
    await _lost_click(
        store_proxy,
        lambda: _create(browser, admin_headers, t),
        _create_markers("owner", t),
        lose="reply",
        what="create's owner",
    )
    reseller = await _one_usable_tenant(client, direct, admin_headers, t)
    again = await _create(browser, admin_headers, t)
    if again.status_code == 201:
        assert again.json()["id"] == reseller["_id"], again.text
    else:
        assert again.status_code == 409, again.text
        assert reseller["_id"] in str(again.json()["detail"]), (
            f"the repeat answered 409 {again.json()['detail']!r}: nothing names the tenant {reseller['_id']} "
            f"({t.name}) it had made"
        )


@pytest.mark.parametrize(
    ("write", "lose"),
    [
        pytest.param("email_claim", "reply", id="email_claim-reply"),
        pytest.param("owner_key", "reply", id="owner_key-reply"),
        pytest.param("reseller", "reply", id="reseller-reply"),
        pytest.param("owner", "request", id="owner-request"),
    ],
)
async def test_a_create_retyped_after_a_lost_write_makes_the_tenant_the_form_says(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    store_proxy: StoreProxy,
    write: str,
    lose: Lose,
) -> None:
    """The creation loses a write (503) before its owner is stored; the admin fixes a typo in the
    company's name, types another password and sends the form again for the same owner email. The
    201 is the tenant the form says: its name (answered, stored, in its settings) and its password."""
    t = _new_tenant()
    retyped = NewTenant(unique("Revenda Corrigida "), t.email, "owner-pass-9")
    await _lost_click(
        store_proxy,
        lambda: _create(browser, admin_headers, t),
        _create_markers(write, t),
        lose=lose,
        what=f"create's {write}",
    )
    assert not await _owner_stored(direct, t.email)
    again = await _create(browser, admin_headers, retyped)
    assert again.status_code == 201, again.text
    assert again.json()["name"] == retyped.name, f"asked for {retyped.name!r}, answered 201 with {again.json()}"
    reseller = await _one_usable_tenant(client, direct, admin_headers, retyped)
    config = await direct.reseller_configs.find_one({"_id": reseller["_id"]})
    assert config["company_name"] == retyped.name, config


def _agent_body(email: str, department_id: str, *, name: str | None = None, password: str = AGENT_PASSWORD) -> Any:
    return {
        "name": name or unique("Agente "),
        "email": email,
        "password": password,
        "role": "agent",
        "department_ids": [department_id],
    }


@pytest.mark.parametrize(
    ("write", "lose"),
    [
        pytest.param("email_claim", "reply", id="email_claim-reply"),
        pytest.param("reseller", "reply", id="reseller-reply"),
        pytest.param("owner", "request", id="owner-request"),
    ],
)
async def test_an_agent_given_the_owners_email_between_a_lost_write_and_the_repeat_leaves_no_half_tenant(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    store_proxy: StoreProxy,
    rival: Tenant,
    write: str,
    lose: Lose,
) -> None:
    """The admin's creation of a reseller stops after one of its writes (503). Meanwhile another
    tenant's owner hires an agent with the very email the new owner was given; then the admin clicks
    again. Exactly one of the two gets the email (one 201, one 409) and nothing is left half: no
    tenant (stored, listed to the admin) without its owner; the winner works as answered."""
    t = _new_tenant()
    hired: list[httpx.Response] = []
    agent = _agent_body(t.email, rival.departments[0]["id"])

    async def hire() -> None:
        hired.append(await browser.post(f"{API}/users", json=agent, headers=rival.headers))

    await _lost_click(
        store_proxy,
        lambda: _create(browser, admin_headers, t),
        _create_markers(write, t),
        lose=lose,
        what=f"create's {write}",
        meanwhile=hire,
    )
    (hire_answer,) = hired
    again = await _create(browser, admin_headers, t)
    assert sorted([hire_answer.status_code, again.status_code]) == [201, 409], (hire_answer.text, again.text)
    users = await direct.users.find({"email": t.email}).to_list(None)
    assert len(users) == 1, users
    await _no_half_tenant(direct, browser, admin_headers, t.email)
    if hire_answer.status_code == 201:
        headers = await _signed_in(client, t.email, AGENT_PASSWORD)
        me = (await client.get(f"{API}/auth/me", headers=headers)).json()
        assert (me["role"], me["reseller_id"]) == ("agent", rival.id), me
        assert await _every_tenant_of(direct, t.email) == []
    else:
        await _one_usable_tenant(client, direct, admin_headers, t)


@pytest.mark.parametrize(
    "second",
    [
        pytest.param("double_click", id="double_click"),
        pytest.param("another_admin", id="another_admin"),
    ],
)
async def test_two_creates_of_one_owner_at_one_moment_end_with_one_tenant_as_the_201_says(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    monkeypatch: pytest.MonkeyPatch,
    second: str,
) -> None:
    """The first creation is held in-process after its claims and the tenant's documents, before
    its owner user is written (a slow store); the second (the same form clicked twice, or another
    admin's form for the same owner email, another company name and password) runs to its end;
    then the first goes on. One answers 201, the other 409, and the tenant is the one the 201 says:
    its name, its owner's password."""
    first = _new_tenant()
    other = first if second == "double_click" else NewTenant(unique("Outra "), first.email, "other-pass-2")
    real = users_service.create_login_user
    hold = _hold()

    async def held(db: Any, **kwargs: Any) -> Any:
        if kwargs.get("role") == "reseller" and kwargs.get("email") == first.email and not hold.reached.is_set():
            hold.reached.set()
            await hold.release_.wait()
        return await real(db, **kwargs)

    monkeypatch.setattr(users_service, "create_login_user", held)
    click = asyncio.ensure_future(_create(browser, admin_headers, first))
    try:
        await hold.caught(click, "first create's owner user")
        later = await _create(browser, admin_headers, other)
    finally:
        hold.release()
    earlier = await click
    monkeypatch.setattr(users_service, "create_login_user", real)
    answers = {"first": earlier, "second": later}
    assert sorted(a.status_code for a in answers.values()) == [201, 409], {k: a.text for k, a in answers.items()}
    won = first if earlier.status_code == 201 else other
    answer = earlier if earlier.status_code == 201 else later
    assert answer.json()["name"] == won.name, f"asked for {won.name!r}, answered 201 with {answer.json()}"
    reseller = await _one_usable_tenant(client, direct, admin_headers, won)
    assert answer.json()["id"] == reseller["_id"]


async def test_an_agent_hired_with_the_owners_email_while_the_tenant_is_created_never_takes_it(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    monkeypatch: pytest.MonkeyPatch,
    rival: Tenant,
) -> None:
    """The admin's creation claims the owner's email and is held there (a slow store), before any
    of the tenant's documents; at that moment another tenant's owner hires an agent with that very
    email, whose user the email's claim does not name yet. The hire must be refused (409): taking
    the email would leave the company, once written, without its owner for good."""
    t = _new_tenant()
    real = users_service.claim_email
    hold = _hold()

    async def held(db: Any, email: str, **kwargs: Any) -> Any:
        bound = await real(db, email, **kwargs)
        if kwargs.get("owner") and email == t.email and not hold.reached.is_set():
            hold.reached.set()
            await hold.release_.wait()
        return bound

    monkeypatch.setattr(users_service, "claim_email", held)
    click = asyncio.ensure_future(_create(browser, admin_headers, t))
    try:
        await hold.caught(click, "the create's email claim")
        hire = await browser.post(
            f"{API}/users", json=_agent_body(t.email, rival.departments[0]["id"]), headers=rival.headers
        )
    finally:
        hold.release()
    created = await click
    assert (hire.status_code, created.status_code) == (409, 201), (hire.text, created.text)
    await _no_half_tenant(direct, browser, admin_headers, t.email)
    reseller = await _one_usable_tenant(client, direct, admin_headers, t)
    assert created.json()["id"] == reseller["_id"]


# -- an agent's creation ------------------------------------------------------------------------------


def _agent_markers(write: str, email: str) -> tuple[bytes, ...]:
    markers: dict[str, tuple[bytes, ...]] = {
        "email_claim": (command_marker("insert", "natural_keys"), string_element("_id", f"email:{email}")),
        "user": (command_marker("insert", "users"), string_element("email", email)),
    }
    return markers[write]


async def _one_agent(
    client: httpx.AsyncClient, direct: Any, tenant: Tenant, email: str, *, name: str, password: str
) -> dict[str, Any]:
    """Exactly one user holds `email`: an agent of `tenant` named `name`, the email's claim bound to
    it, listed once to its owner, logging in with `password`."""
    users = await direct.users.find({"email": email}).to_list(None)
    assert len(users) == 1, users
    (user,) = users
    assert (user["role"], user["reseller_id"], user["name"], user["active"]) == ("agent", tenant.id, name, True), user
    assert user["department_ids"] == [tenant.departments[0]["id"]], user
    claim = await direct.natural_keys.find_one({"_id": f"email:{email}"})
    assert claim is not None and claim["target"] == user["_id"], claim
    listed = await collect_pages(client, tenant.headers, f"{API}/users")
    assert [u["id"] for u in listed if u["email"] == email] == [user["_id"]], listed
    headers = await _signed_in(client, email, password)
    me = (await client.get(f"{API}/auth/me", headers=headers)).json()
    assert (me["id"], me["role"], me["reseller_id"]) == (user["_id"], "agent", tenant.id), me
    return dict(user)


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", AGENT_WRITES)
async def test_an_agent_create_that_loses_a_write_ends_with_one_agent_once_repeated(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    direct: Any,
    store_proxy: StoreProxy,
    company: Tenant,
    write: str,
    lose: Lose,
) -> None:
    """The owner hires an agent; the creation loses its email claim or the user (503) and the owner
    clicks again: one agent, who logs in. The repeat answers 201, or 409 only when the lost attempt
    had stored the user; a third click changes nothing."""
    email = f"{unique('agent')}@example.com"
    body = _agent_body(email, company.departments[0]["id"])

    async def send() -> httpx.Response:
        return await browser.post(f"{API}/users", json=body, headers=company.headers)

    await _lost_click(store_proxy, send, _agent_markers(write, email), lose=lose, what=f"agent create's {write}")
    user_there = await direct.users.find_one({"email": email}) is not None
    again = await send()
    if again.status_code == 409:
        assert user_there, f"the repeat was refused though no user was stored: {again.text}"
    else:
        assert again.status_code == 201, again.text
    user = await _one_agent(client, direct, company, email, name=body["name"], password=AGENT_PASSWORD)
    if again.status_code == 201:
        assert again.json()["id"] == user["_id"], again.text
    before = await _counts(direct)
    assert (await send()).status_code == 409
    assert await _counts(direct) == before


@pytest.mark.parametrize("where", ["same_tenant", "other_tenant"])
async def test_two_agent_creates_of_one_email_at_one_moment_make_one_agent_as_the_201_says(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    direct: Any,
    company: Tenant,
    rival: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Two agents created with one email: the first is held in-process between its email claim and
    its user insert, while the second (by the same owner with another name and password, or by
    another tenant's owner) runs to its end. One 201, one 409; the one user is the 201's."""
    email = f"{unique('agent')}@example.com"
    second_tenant = company if where == "same_tenant" else rival
    bodies = [
        _agent_body(email, company.departments[0]["id"]),
        _agent_body(email, second_tenant.departments[0]["id"], password="agent-pass-2"),
    ]
    real = users_repository.insert
    hold = _hold()

    async def held(db: Any, user: Any) -> None:
        if user.email == email and not hold.reached.is_set():
            hold.reached.set()
            await hold.release_.wait()
        await real(db, user)

    monkeypatch.setattr(users_repository, "insert", held)
    click = asyncio.ensure_future(browser.post(f"{API}/users", json=bodies[0], headers=company.headers))
    try:
        await hold.caught(click, "first agent's user insert")
        later = await browser.post(f"{API}/users", json=bodies[1], headers=second_tenant.headers)
    finally:
        hold.release()
    earlier = await click
    monkeypatch.setattr(users_repository, "insert", real)
    answers = [earlier, later]
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    i = 0 if earlier.status_code == 201 else 1
    tenant = company if i == 0 else second_tenant
    user = await _one_agent(client, direct, tenant, email, name=bodies[i]["name"], password=str(bodies[i]["password"]))
    assert answers[i].json()["id"] == user["_id"] and answers[i].json()["name"] == bodies[i]["name"]
    assert answers[1 - i].json()["detail"] == "email already in use", answers[1 - i].text


# -- suspension ---------------------------------------------------------------------------------------


@dataclass
class Shop:
    """A tenant with an agent and a WhatsApp number that clients write to."""

    tenant: Tenant
    conn: dict[str, Any]
    owner_email: str

    @property
    def agent(self) -> dict[str, Any]:
        return self.tenant.agents[0]


async def _shop(client: httpx.AsyncClient, admin: dict[str, str], evolution: FakeEvolution) -> Shop:
    tenant = await make_tenant(client, admin, departments=1, agents=1)
    conn = await make_connection(client, tenant, evolution)
    shown = (await client.get(f"{API}/resellers/{tenant.id}", headers=admin)).json()
    return Shop(tenant, conn, shown["owner_email"])


async def _says(evolution: FakeEvolution, direct: Any, shop: Shop, phone: str, text: str) -> str:
    """The client writes on WhatsApp; the webhook is processed and the message stored. Its id."""
    result = await evolution.inbound(shop.conn["instance_name"], phone, text)
    raw = await settled(direct, result, within=WAIT)
    assert raw["status"] == "processed", raw
    stored = await direct.messages.find_one({"body": text, "reseller_id": shop.tenant.id})
    assert stored is not None, f"{text!r} processed, not stored: {raw}"
    return str(stored["_id"])


def _suspension_markers(tenant_id: str, active: bool) -> tuple[bytes, ...]:
    return (
        command_marker("update", "resellers"),
        string_element("_id", tenant_id),
        b"\x08active\x00" + (b"\x01" if active else b"\x00"),
    )


async def _set_active(
    browser: httpx.AsyncClient, admin: dict[str, str], tenant_id: str, active: bool
) -> httpx.Response:
    return await browser.patch(f"{API}/resellers/{tenant_id}", json={"active": active}, headers=admin)


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("step", ["suspend", "reactivate"])
async def test_a_suspension_or_reactivation_that_loses_its_write_holds_once_repeated_and_keeps_every_message(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    step: str,
    lose: Lose,
) -> None:
    """The admin suspends a tenant and later lifts the suspension; one of the two loses its write
    (503) and is clicked again. Sessions follow the stored state at every moment (refused while it
    is inactive), every session of before stays ended after the reactivation (a new login works),
    nobody logs in while it lasts, and every WhatsApp message that arrived meanwhile (an existing
    client's and a new client's) is stored, in its ticket, unread, for the agent afterwards."""
    shop = await _shop(client, admin_headers, evolution)
    agent_before, owner_before = shop.agent["headers"], shop.tenant.headers
    phone, newcomer = unique_phone(), unique_phone()
    first = await _says(evolution, direct, shop, phone, unique("Antes da suspensão "))
    ticket_id = str((await direct.messages.find_one({"_id": first}))["ticket_id"])
    epoch = int((await direct.resellers.find_one({"_id": shop.tenant.id})).get("token_epoch", 0))

    async def sessions_follow_the_store() -> None:
        stored = await direct.resellers.find_one({"_id": shop.tenant.id})
        expected = 200 if stored.get("active", True) else 401
        assert await _me(browser, agent_before) == expected, stored
        assert await _me(browser, owner_before) == expected, stored

    async def change(active: bool) -> None:
        if step == ("suspend" if not active else "reactivate"):
            await _lost_click(
                store_proxy,
                lambda: _set_active(browser, admin_headers, shop.tenant.id, active),
                _suspension_markers(shop.tenant.id, active),
                lose=lose,
                what=f"{step}'s write",
            )
            if active:
                # Until it is lifted for sure, the sessions of before stay ended.
                assert await _me(browser, agent_before) == 401
            else:
                await sessions_follow_the_store()
        again = await _set_active(browser, admin_headers, shop.tenant.id, active)
        assert again.status_code == 200 and again.json()["active"] is active, again.text

    await change(False)
    assert await _me(browser, agent_before) == 401 and await _me(browser, owner_before) == 401
    assert (await _login(browser, shop.agent["email"], AGENT_PASSWORD)).status_code == 401
    assert (await _login(browser, shop.owner_email, OWNER_PASSWORD)).status_code == 401
    during = [
        await _says(evolution, direct, shop, phone, unique("Durante a suspensão ")),
        await _says(evolution, direct, shop, newcomer, unique("Cliente novo durante a suspensão ")),
    ]
    stored = await direct.resellers.find_one({"_id": shop.tenant.id})
    assert stored["active"] is False and int(stored["token_epoch"]) > epoch, stored

    await change(True)
    stored = await direct.resellers.find_one({"_id": shop.tenant.id})
    assert stored["active"] is True, stored
    # Every session of before the suspension stays ended; a new login works.
    assert await _me(browser, agent_before) == 401 and await _me(browser, owner_before) == 401
    agent = await _signed_in(browser, shop.agent["email"], AGENT_PASSWORD)
    owner = await _signed_in(browser, shop.owner_email, OWNER_PASSWORD)
    assert await _me(browser, agent) == 200 and await _me(browser, owner) == 200

    # Nothing lost: the messages of before and during are in their tickets, which the agent lists.
    messages = {m: await direct.messages.find_one({"_id": m}) for m in [first, *during]}
    assert all(doc is not None for doc in messages.values()), messages
    assert messages[during[0]]["ticket_id"] == ticket_id, messages[during[0]]
    new_ticket = str(messages[during[1]]["ticket_id"])
    for headers in (agent, owner):
        inbox = {
            t["id"]
            for s in ("espera", "atendendo")
            for t in await collect_pages(browser, headers, f"{API}/tickets", status=s)
        }
        assert {ticket_id, new_ticket} <= inbox, inbox
    thread = await browser.get(f"{API}/tickets/{ticket_id}/messages", params={"limit": 200}, headers=agent)
    assert [m["id"] for m in thread.json()["items"]] == [first, during[0]], thread.text
    shown = (await browser.get(f"{API}/tickets/{ticket_id}", headers=agent)).json()
    assert shown["unread_count"] >= 2, shown


# -- settings ----------------------------------------------------------------------------------------

PEER_OPTIONS = {
    "OUTBOUND_WORKER_ENABLED": "false",
    "WEBHOOK_PROCESSOR_ENABLED": "false",
    "CONNECTION_WATCH_ENABLED": "false",
    "TICKET_SWEEP_ENABLED": "false",
    "SCHEDULED_MESSAGES_ENABLED": "false",
    "MEDIA_FETCH_ENABLED": "false",
    "SETUP_CACHE_SECONDS": str(PEER_CACHE),
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "10000",
}


@pytest.fixture(scope="module")
async def peer(
    app: Any, mongo_url: str, db_name: str, evolution: FakeEvolution, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """Another backend process on the same database (straight to the store), behind the same
    balancer: it answers its own requests and keeps its own copy of the settings."""
    options = {**PEER_OPTIONS, "EVOLUTION_BASE_URL": evolution.url, "EVOLUTION_API_KEY": evolution.api_key}
    loop = asyncio.get_running_loop()
    workdir = tmp_path_factory.mktemp("peer")
    server = await loop.run_in_executor(None, lambda: start_server(mongo_url, db_name, workdir, **options))
    try:
        yield server
    finally:
        await loop.run_in_executor(None, server.stop)


@pytest.fixture(scope="module")
async def peer_http(peer: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=peer.http, timeout=60) as c:
        yield c


@dataclass
class Desk:
    """A tenant whose agent holds a WhatsApp conversation."""

    tenant: Tenant
    ticket_id: str
    agent: dict[str, str]
    agent_name: str


async def _desk(client: httpx.AsyncClient, admin: dict[str, str], evolution: FakeEvolution, direct: Any) -> Desk:
    tenant = await make_tenant(client, admin, departments=1, agents=1)
    conn = await make_connection(client, tenant, evolution)
    ticket_id, _, agent = await held_ticket(client, tenant, evolution, conn, direct)
    return Desk(tenant, ticket_id, agent, tenant.agents[0]["name"])


async def _reply_signed(http: httpx.AsyncClient, desk: Desk) -> bool:
    """The agent replies through `http`'s process: whether that process signed it (the stored body)."""
    text = unique("resposta ")
    r = await http.post(f"{API}/tickets/{desk.ticket_id}/messages", json={"body": text}, headers=desk.agent)
    assert r.status_code == 201, r.text
    body = str(r.json()["body"])
    assert body in (text, f"*{desk.agent_name}:*\n{text}"), body
    return body != text


def _config_markers(tenant_id: str) -> tuple[bytes, ...]:
    return (command_marker("update", "reseller_configs"), string_element("_id", tenant_id))


async def _acted_on_everywhere(
    browser: httpx.AsyncClient, peer_http: httpx.AsyncClient, direct: Any, desk: Desk, answered: dict[str, Any]
) -> None:
    """What the API answered is what the store holds and both settings pages show; the process that
    answered signs by it at once, the other within its SETUP_CACHE_SECONDS."""
    at = time.monotonic()
    stored = await direct.reseller_configs.find_one({"_id": desk.tenant.id})
    for key in ("signature_enabled", "read_receipts", "timezone", "welcome_message"):
        assert stored[key] == answered[key], (key, stored, answered)
    assert await _reply_signed(browser, desk) is answered["signature_enabled"]
    for http in (browser, peer_http):
        page = (await http.get(f"{API}/reseller-config", headers=desk.tenant.headers)).json()
        assert {k: page[k] for k in answered} == answered, page
    await asyncio.sleep(max(0.0, at + PEER_CACHE + 0.2 - time.monotonic()))
    assert await _reply_signed(peer_http, desk) is answered["signature_enabled"], (
        f"the other process still signs as before {PEER_CACHE}s after the settings said {answered}"
    )
    assert await _reply_signed(browser, desk) is answered["signature_enabled"]


@pytest.mark.parametrize(
    ("lose", "repeated"),
    [("request", True), ("reply", True), ("reply", False)],
    ids=["request-repeated", "reply-repeated", "reply-left"],
)
async def test_a_settings_save_that_loses_its_write_is_acted_on_by_every_process_as_the_api_says(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    peer_http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
    lose: Lose,
    repeated: bool,
) -> None:
    """Both processes have signed a reply (each keeps its copy of the settings). The owner turns
    the signature and read receipts off, sets the timezone and a welcome text; the save loses its
    write (503). The owner saves again, or leaves and reopens the settings page. The settings the
    API then shows are those the store holds, and both processes act on them (replies' signature)
    within the documented cache time, never on the old ones for good."""
    desk = await _desk(client, admin_headers, evolution, direct)
    assert await _reply_signed(browser, desk) and await _reply_signed(await _peer_ready(peer_http), desk)
    change = {"signature_enabled": False, "read_receipts": False, "timezone": "UTC", "welcome_message": unique("Olá ")}

    async def save() -> httpx.Response:
        return await browser.patch(f"{API}/reseller-config", json=change, headers=desk.tenant.headers)

    await _lost_click(store_proxy, save, _config_markers(desk.tenant.id), lose=lose, what="settings save")
    await _reply_signed(peer_http, desk)  # the other process keeps a copy read just now
    if repeated:
        r = await save()
    else:
        r = await browser.get(f"{API}/reseller-config", headers=desk.tenant.headers)
    assert r.status_code == 200, r.text
    answered = {k: r.json()[k] for k in change}
    if repeated or lose == "reply":
        assert answered == change, answered
    await _acted_on_everywhere(browser, peer_http, direct, desk, answered)


async def _peer_ready(peer_http: httpx.AsyncClient) -> httpx.AsyncClient:
    r = await peer_http.get("/health/ready")
    assert r.status_code == 200, r.text
    return peer_http


async def test_a_settings_save_lost_while_the_same_owner_saves_another_setting_elsewhere_keeps_both(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    peer_http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    direct: Any,
    evolution: FakeEvolution,
    store_proxy: StoreProxy,
) -> None:
    """The owner's save of the signature (through one process) loses its write; meanwhile, in
    another tab served by the other process, the owner saves read receipts off and a welcome text;
    then the first save is clicked again. Both saves stand, and both processes act on them."""
    desk = await _desk(client, admin_headers, evolution, direct)
    assert await _reply_signed(browser, desk) and await _reply_signed(await _peer_ready(peer_http), desk)
    mine = {"signature_enabled": False, "timezone": "UTC"}
    theirs = {"read_receipts": False, "welcome_message": unique("Bem-vindo ")}
    other_tab: list[httpx.Response] = []

    async def elsewhere() -> None:
        other_tab.append(await peer_http.patch(f"{API}/reseller-config", json=theirs, headers=desk.tenant.headers))

    async def save() -> httpx.Response:
        return await browser.patch(f"{API}/reseller-config", json=mine, headers=desk.tenant.headers)

    await _lost_click(
        store_proxy, save, _config_markers(desk.tenant.id), lose="request", what="settings save", meanwhile=elsewhere
    )
    (theirs_answer,) = other_tab
    assert theirs_answer.status_code == 200, theirs_answer.text
    await _reply_signed(peer_http, desk)  # the other process keeps a copy read just now
    r = await save()
    assert r.status_code == 200, r.text
    answered = {k: r.json()[k] for k in ("signature_enabled", "read_receipts", "timezone", "welcome_message")}
    assert answered == {**mine, **theirs}, answered
    await _acted_on_everywhere(browser, peer_http, direct, desk, answered)


# -- password change and login --------------------------------------------------------------------------


def _pair_key(email: str) -> str:
    return f"acct:{email}|addr:{ADDRESS}"


def _throttle_markers(write: str, email: str) -> tuple[bytes, ...]:
    """A login's (or password change's) slot insert is the first insert of its account's counter;
    a credit's `_id` alone has ":c:"."""
    key = (command_marker("insert", "login_throttle"), string_element("key", _pair_key(email)))
    return key if write == "slot" else (*key, b":c:")


async def _new_agent(client: httpx.AsyncClient, tenant: Tenant) -> tuple[str, str]:
    """A new agent of `tenant`: (id, email)."""
    email = f"{unique('agent')}@example.com"
    r = await client.post(f"{API}/users", json=_agent_body(email, tenant.departments[0]["id"]), headers=tenant.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), email


@pytest.mark.parametrize(
    ("write", "lose"), [("user", "request"), ("user", "reply"), ("credit", "request")], ids=lambda v: str(v)
)
async def test_a_password_change_that_loses_a_write_leaves_one_password_working_and_ends_old_sessions(
    app: Any,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    direct: Any,
    store_proxy: StoreProxy,
    company: Tenant,
    throttle_clock: ThrottleClock,
    write: str,
    lose: Lose,
) -> None:
    """An agent signed in on two devices changes its password on one; the change loses a write
    (503). The store holds the old password or the new one, never neither, and the API agrees
    (logins, the sessions of before alive only with the old). The agent clicks again (or, its
    session ended by the change that did happen, signs in with the new password): in the end the
    new password works, the old does not, and every session of before is ended."""
    user_id, email = await _new_agent(client, company)
    old, new = AGENT_PASSWORD, "new-agent-pass-2"
    here, there = await _signed_in(browser, email, old), await _signed_in(browser, email, old)
    version = int((await direct.users.find_one({"_id": user_id})).get("token_version", 0))
    markers = (
        (command_marker("findAndModify", "users"), string_element("_id", user_id), b"\x02password_hash\x00")
        if write == "user"
        else _throttle_markers("credit", email)
    )

    async def change(headers: dict[str, str]) -> httpx.Response:
        body = {"current_password": old, "new_password": new}
        return await browser.post(f"{API}/auth/me/password", json=body, headers=headers)

    await _lost_click(store_proxy, lambda: change(here), markers, lose=lose, what=f"password change's {write}")
    stored = await direct.users.find_one({"_id": user_id})
    works = {p for p in (old, new) if verify_password(p, stored["password_hash"])}
    assert len(works) == 1, f"the store holds {'both' if works else 'neither'} of the passwords"
    (kept,) = works
    assert kept == (old if (write, lose) == ("user", "request") else new), kept
    async with _from_address(app, "198.51.100.21") as elsewhere:
        assert (await _login(elsewhere, email, kept)).status_code == 200
        assert (await _login(elsewhere, email, old if kept == new else new)).status_code == 401
    expected = 200 if kept == old else 401
    assert (await _me(browser, here), await _me(browser, there)) == (expected, expected)

    again = await change(here)
    if kept == old:
        assert again.status_code == 200, again.text
        fresh = _bearer(str(again.json()["access_token"]))
    else:
        assert again.status_code == 401, again.text  # this session ended with the change
        fresh = await _signed_in(browser, email, new)
    assert await _me(browser, fresh) == 200
    assert (await _me(browser, here), await _me(browser, there)) == (401, 401)
    assert (await _login(browser, email, old)).status_code == 401
    assert (await _login(browser, email, new)).status_code == 200
    stored = await direct.users.find_one({"_id": user_id})
    assert verify_password(new, stored["password_hash"]) and int(stored["token_version"]) > version, stored


@pytest.mark.parametrize("lose", LOSSES)
@pytest.mark.parametrize("write", ["slot", "credit"])
async def test_a_login_that_loses_a_throttle_write_lets_its_user_in_and_keeps_the_throttle(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    settings: Any,
    store_proxy: StoreProxy,
    company: Tenant,
    throttle_clock: ThrottleClock,
    write: str,
    lose: Lose,
) -> None:
    """An agent signs in (a fresh throttle window) and the login loses its slot or its credit
    (503); the agent signs in again at once: 200. The throttle still holds: after that success,
    exactly LOGIN_MAX_FAILURES wrong passwords answer 401, then even the right one 429 until the
    window ends, when it answers 200."""
    _, email = await _new_agent(client, company)
    await _lost_click(
        store_proxy,
        lambda: _login(browser, email, AGENT_PASSWORD),
        _throttle_markers(write, email),
        lose=lose,
        what=f"login's {write}",
    )
    headers = await _signed_in(browser, email, AGENT_PASSWORD)
    assert await _me(browser, headers) == 200
    for i in range(settings.LOGIN_MAX_FAILURES):
        r = await _login(browser, email, f"typo-{i}-xx")
        assert r.status_code == 401, (i, r.text)
    locked = await _login(browser, email, AGENT_PASSWORD)
    assert locked.status_code == 429, locked.text
    assert 0 < int(locked.headers["retry-after"]) <= settings.LOGIN_WINDOW_SECONDS
    throttle_clock.now += settings.LOGIN_WINDOW_SECONDS
    assert (await _login(browser, email, AGENT_PASSWORD)).status_code == 200


async def test_a_right_password_whose_login_lost_its_credit_after_typos_is_let_in_by_the_windows_end(
    app: Any,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    settings: Any,
    store_proxy: StoreProxy,
    company: Tenant,
    throttle_clock: ThrottleClock,
) -> None:
    """An agent mistypes its password LOGIN_MAX_FAILURES - 1 times, then types it right; that login
    loses its credit (503) and the agent tries again: let in, or locked (429) at most until the
    window ends, never longer; from anywhere else it signs in meanwhile."""
    _, email = await _new_agent(client, company)
    for i in range(settings.LOGIN_MAX_FAILURES - 1):
        assert (await _login(browser, email, f"typo-{i}-xx")).status_code == 401
    await _lost_click(
        store_proxy,
        lambda: _login(browser, email, AGENT_PASSWORD),
        _throttle_markers("credit", email),
        lose="request",
        what="login's credit",
    )
    again = await _login(browser, email, AGENT_PASSWORD)
    if again.status_code != 200:
        assert again.status_code == 429, again.text
        assert 0 < int(again.headers["retry-after"]) <= settings.LOGIN_WINDOW_SECONDS
        async with _from_address(app, "198.51.100.22") as elsewhere:
            assert (await _login(elsewhere, email, AGENT_PASSWORD)).status_code == 200
        throttle_clock.now += settings.LOGIN_WINDOW_SECONDS
        again = await _login(browser, email, AGENT_PASSWORD)
    assert again.status_code == 200, again.text
    assert await _me(browser, _bearer(str(again.json()["access_token"]))) == 200


async def test_two_password_changes_from_one_current_password_at_one_moment_let_one_win(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    direct: Any,
    company: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    throttle_clock: ThrottleClock,
) -> None:
    """An agent signed in on two devices changes its password on both at one moment (each typing
    the current one right): the first is held in-process between its check of the current password
    and its write, while the second runs to its end. A change is a compare-and-set on the current
    password, like Assumir on a ticket: one answers 200, the other a clear 4xx (its current password
    is no longer the current one, or its session was ended by the other's change), and the password
    that works is the winner's, whose fresh session works."""
    user_id, email = await _new_agent(client, company)
    first_device, second_device = (
        await _signed_in(browser, email, AGENT_PASSWORD),
        await _signed_in(browser, email, AGENT_PASSWORD),
    )
    passwords = ["first-new-pass-1", "second-new-pass-2"]
    real = users_repository.revoke_if_at
    hold = _hold()

    async def held(db: Any, scope: Any, uid: str, version: int, changes: dict[str, Any]) -> Any:
        if uid == user_id and "password_hash" in changes and not hold.reached.is_set():
            hold.reached.set()
            await hold.release_.wait()
        return await real(db, scope, uid, version, changes)

    async def change(headers: dict[str, str], new: str) -> httpx.Response:
        body = {"current_password": AGENT_PASSWORD, "new_password": new}
        return await browser.post(f"{API}/auth/me/password", json=body, headers=headers)

    monkeypatch.setattr(users_repository, "revoke_if_at", held)
    click = asyncio.ensure_future(change(first_device, passwords[0]))
    try:
        await hold.caught(click, "first change's write")
        later = await change(second_device, passwords[1])
    finally:
        hold.release()
    earlier = await click
    monkeypatch.setattr(users_repository, "revoke_if_at", real)
    answers = [earlier, later]
    won = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert len(won) == 1, f"both changes answered {[a.status_code for a in answers]}: {[a.text for a in answers]}"
    (i,) = won
    assert answers[1 - i].status_code in (401, 409, 422), answers[1 - i].text
    stored = await direct.users.find_one({"_id": user_id})
    assert verify_password(passwords[i], stored["password_hash"]), f"the winner's {passwords[i]!r} is not stored"
    assert await _me(browser, _bearer(str(answers[i].json()["access_token"]))) == 200
