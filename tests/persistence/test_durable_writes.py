"""Item 4: the application writes with journaled majority write concern and reads with majority
read concern — on the client, the database handle, and every collection taken from it — and no
code path weakens it."""

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from backend.core.config import Settings
from backend.core.db import durable_database, make_client

ROOT = Path(__file__).resolve().parents[2]
DURABLE = WriteConcern(w="majority", j=True)


async def test_application_handles_are_journaled_majority(app: Any) -> None:
    db = app.state.db
    assert db.write_concern == DURABLE and db.read_concern == ReadConcern("majority")
    for name in ("tickets", "messages", "ticket_events", "deploy_ledger", "schema_migrations"):
        assert db[name].write_concern == DURABLE and db[name].read_concern.level == "majority"
    client = app.state.mongo
    assert client.write_concern == DURABLE and client.read_concern.level == "majority"


def with_options(url: str, **options: str) -> str:
    """The URL with these options merged into its query string, whatever it already holds (a
    `?replicaSet=rs0` from README's real-MongoDB line must not become `...?replicaSet=rs0/?w=1`)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), parts.fragment))


def test_with_options_keeps_an_existing_query_string() -> None:
    assert with_options("mongodb://h:1/?replicaSet=rs0", w="1") == "mongodb://h:1/?replicaSet=rs0&w=1"
    assert with_options("mongodb://h:1", w="1") == "mongodb://h:1/?w=1"


async def test_client_options_win_over_a_weaker_url(settings: Settings) -> None:
    # The harness's own URL (FerretDB, or whatever MONGO_URL `make test` was given) and a replica
    # set URL that already has a query string: the client is built from both without connecting.
    urls = [
        with_options(settings.MONGO_URL, w="1", journal="false"),
        "mongodb://127.0.0.1:1/?replicaSet=rs0&w=1&journal=false&readConcernLevel=local",
    ]
    for url in urls:
        client = make_client(settings.model_copy(update={"MONGO_URL": url}))
        try:
            assert client.write_concern == DURABLE and client.read_concern.level == "majority"
            assert durable_database(client, "x").write_concern == DURABLE
        finally:
            await client.close()


async def test_an_acknowledged_durable_write_is_readable_at_once(app: Any) -> None:
    db = app.state.db
    await db.durability_probe.insert_one({"_id": "probe", "v": 1})
    assert await db.durability_probe.find_one({"_id": "probe"}) == {"_id": "probe", "v": 1}


WEAKENING = re.compile(r"WriteConcern\(\s*(w\s*=\s*[01]\b|[01]\b)|journal\s*=\s*False|j\s*=\s*False|w\s*=\s*0\b")


def test_no_code_weakens_the_write_concern() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "backend").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if WEAKENING.search(line)
    ]
    assert offenders == []
