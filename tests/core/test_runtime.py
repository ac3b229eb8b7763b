"""Process state lives in one runtime per client, and start-up depends on no import side effect."""

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

import backend.app  # noqa: F401 - this process has imported everything; the subprocess has not
from backend import gates
from backend.core.db import durable_database
from backend.core.foldlog import FoldLog, View
from backend.core.ids import new_id
from backend.core.indexes import declared
from backend.core.runtime import open_runtime, runtime_of
from backend.core.seqlog import SeqLog, block_of
from backend.realtime import feed
from backend.tickets import service as tickets


def _count(state: dict[str, Any], _: Any) -> None:
    state["n"] = state.get("n", 0) + 1


class Recorder:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def announce(self, record: dict[str, Any]) -> None:
        self.seqs.append(int(record["seq"]))

    def access_changed(self, reseller_id: str, user_id: str | None) -> None:
        pass

    def resync(self, reseller_id: str) -> None:
        pass


@pytest.fixture
async def two_processes(mongo_url: str, db_name: str) -> AsyncIterator[list[Any]]:
    clients: list[AsyncMongoClient[dict[str, Any]]] = [AsyncMongoClient(mongo_url, tz_aware=True) for _ in range(2)]
    yield [durable_database(c, db_name) for c in clients]
    for c in clients:
        await c.close()


async def test_two_clients_in_one_process_have_separate_runtimes(two_processes: list[Any]) -> None:
    a, b = two_processes
    runtime_a = open_runtime(a.client)
    assert runtime_of(a) is runtime_a and runtime_of(b) is not runtime_a
    sink = Recorder()
    feed.register_sink(a, sink)
    tenant = new_id()
    await feed.publish(b, reseller_id=tenant, type_="connection.status", connection={"_id": "c"})
    assert sink.seqs == []  # another process's publish reaches this one through Redis, not in memory
    await feed.publish(a, reseller_id=tenant, type_="connection.status", connection={"_id": "c"})
    assert sink.seqs == [2]
    feed_of = ("tenant_events", f"{tenant}:")
    assert runtime_of(b).seqlog_heads[(b.name, *feed_of)] == 1 and runtime_a.seqlog_heads[(a.name, *feed_of)] == 2
    await runtime_a.close()
    await feed.publish(a, reseller_id=tenant, type_="connection.status", connection={"_id": "c"})
    assert sink.seqs == [2]  # a closed runtime has no sinks left


async def test_two_clients_are_two_seqlog_writers_and_only_the_gated_one_may_finalize(
    two_processes: list[Any],
) -> None:
    a, b = two_processes
    log = SeqLog("log", f"{new_id()}:", state_collection="state", cursor_id="cursor")
    first, _ = await log.append(a, {}, reserve=True)
    second, _ = await log.append(b, {}, reserve=True)
    third, _ = await log.append(a, {}, reserve=True)
    # Each owns its own block (shared state would hand b the number after a's): b opens the block
    # above a's, and a, seeing it stored, leaves its block for one above b's.
    assert block_of(first) < block_of(second) < block_of(third)

    gates.connect_domains(a)
    assert runtime_of(a).finalize_hooks and not runtime_of(b).finalize_hooks
    with pytest.raises(RuntimeError, match="finalize hooks not registered"):
        await tickets.after_finalize(b, {"_id": new_id()})


async def test_a_fold_log_read_hint_belongs_to_the_reading_process(two_processes: list[Any]) -> None:
    a, b = two_processes
    counts = FoldLog(entries="t_fold", totals="t_fold_totals", claim_kind="t_fold", views={"": View(_count)})
    bucket = new_id()
    await counts.record(a, bucket, "k1", {})
    assert (await counts.read(a, bucket)).state == {"n": 1}
    assert runtime_of(a).foldlog_hints[(a.name, "t_fold_totals", bucket)] == (0, 1)
    assert (b.name, "t_fold_totals", bucket) not in runtime_of(b).foldlog_hints
    assert (await counts.read(b, bucket)).state == {"n": 1}


def test_a_process_that_imports_no_route_still_knows_every_index() -> None:
    """A standalone worker's gate builds the same indexes as the API's (and a module declaring
    indexes that is not in DECLARED_IN fails this)."""
    code = (
        "import sys\nfrom backend.core.indexes import declared\n"
        "print(sorted(f'{s.collection}.{s.name}' for s in declared()))\nprint('backend.app' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == str(sorted(f"{s.collection}.{s.name}" for s in declared()))
    assert out[1] == "False"
