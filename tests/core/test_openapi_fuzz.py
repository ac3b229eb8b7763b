"""The OpenAPI document tells the truth: schemathesis generates requests for every operation
(stateless, a bounded number of examples per operation) and checks that the app never answers
500 and that every answer — status, content type, headers, body — is one the document declares.
The app runs whole (lifespan, start-up checks, the real FerretDB of the suite); requests are made
as a signed-in admin on the admin routes and as a reseller everywhere else, so they get past
authentication into validation and the services' rules."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.app import create_app
from backend.core.config import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.fuzz

# Generated requests per operation (valid and invalid mixed): keeps the module within a couple of
# minutes on a loaded CI machine.
MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Iterator[Any]:
    app = create_app(settings)
    yield app
    asgi.shutdown_lifespans()  # schemathesis ran the lifespan (workers, database client) in its thread


def _post(client: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.post(f"http://{asgi.HOST}/api/v1{path}", json=body, headers=headers or {})
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


class World:
    """Signed-in users and real documents, so generated requests also reach existing things."""

    def __init__(self, tokens: dict[str, str], ids: dict[str, str]) -> None:
        self.tokens = tokens
        self.ids = ids  # path parameter name → the id of a real document of the reseller's tenant


@pytest.fixture(scope="module")
def world(fuzz_app: Any, api_schema: Any) -> World:
    del api_schema  # loaded first: that starts the app's lifespan
    with asgi.get_client(fuzz_app) as client:
        admin = _post(client, "/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})["access_token"]
        owner = {"name": "Fuzz", "email": "fuzz-owner@example.com", "password": "owner-pass-1"}
        reseller = _post(client, "/resellers", owner, {"Authorization": f"Bearer {admin}"})
        token = _post(client, "/auth/login", {"email": owner["email"], "password": owner["password"]})["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        department = _post(client, "/departments", {"name": "Vendas"}, auth)
        customer = _post(client, "/clients", {"name": "Maria", "phone": "5511999990000"}, auth)
        ticket = _post(
            client,
            "/tickets",
            {"client_id": customer["id"], "department_id": department["id"], "message": "oi"},
            auth,
        )
    ids = {
        "reseller_id": reseller["id"],
        "department_id": department["id"],
        "client_id": customer["id"],
        "ticket_id": ticket["id"],
        "user_id": reseller["owner_id"],
    }
    return World({"admin": admin, "reseller": token}, ids)


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    asgi.get_client(fuzz_app).get(f"http://{asgi.HOST}/health").close()  # starts the lifespan
    return schema


def _operations() -> list[tuple[str, str]]:
    """Read without a database (routes only), so each operation is a test of its own."""
    document = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return [(path, method) for path, item in document["paths"].items() for method in item]


OPERATIONS = _operations()


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_every_answer_is_one_the_document_declares(api_schema: Any, world: World, path: str, method: str) -> None:
    operation = api_schema[path][method]
    token = world.tokens["admin"] if path.startswith("/api/v1/resellers") else world.tokens["reseller"]
    # Valid requests reach the services' rules; invalid ones must be refused as declared; valid
    # ones on real documents (where the path names one) reach past the lookups.
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    real = {name: world.ids[name] for name in re.findall(r"{(\w+)}", path) if name in world.ids}
    if real:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real))

    @given(case=st.one_of(strategies))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    check()
