"""Database commands per inbound message, counted with PyMongo's command monitoring
(`pymongo.monitoring.CommandListener`) on the client the webhook and the processor use.

Runs in the bench's own process, on a database of its own in the bench's store, with the
backend's code: the client is `backend.core.db.make_client` with a listener, opened and gated as
a backend process's (its runtime, then `backend.gates.open_gate`: the hooks between domains —
the reports' recording of every ticket event and stored message, the refile and the automatic
messages after a finalize — then the gate's steps and indexes), the webhook's acknowledgement is
`webhooks.service.receive` (what the route runs: authenticate, then store), and processing is a
`WebhookProcessor` woken by that store with the stored document handed over, exactly as in a
backend process. Not started: the realtime hub (no sockets listen here: it sends no command) and
the time-driven loops (ticket sweep, media fetch, outbound worker), whose commands are per
second, not per message. Two counts, each split by phase (ack / processing) and by
command name:

- **isolated**: one message at a time, so every command belongs to that message and the figure
  does not depend on the machine: first the first message of `clients` new clients, then a
  second message from each of them (a message in an existing conversation, the ticket open);
- **backlog**: `backlog` messages (half first messages, half follow-ups) acknowledged at once with
  the processor stopped, then drained by one polled pass over every lane, as after a burst:
  what group commit and per-walk reuse amortize.

Before counting, one message per lane warms what a running process has already done once (the
lane's cursor read, seqlog's top sync, the server's buildInfo); those are not per message.
"""

import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import time
import traceback
from collections import Counter
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from backend import gates
from backend.core.config import Settings
from backend.core.db import durable_database, make_client
from backend.core.runtime import open_runtime
from backend.webhooks import service
from backend.webhooks.processor import WebhookProcessor

# INGEST_COUNT_STACKS=1: each traced command also names the backend functions that sent it.
STACKS = os.environ.get("INGEST_COUNT_STACKS") == "1"
# INGEST_COUNT_TIMES=1: the isolated messages' mean round trip per command and collection (one
# message at a time, so a command's time is the store's work plus the loopback, not a queue's).
TIMES = os.environ.get("INGEST_COUNT_TIMES") == "1"
# INGEST_COUNT_PROFILE=1: cProfile of the bench process while it drains the backlog (the backend's
# Python: the processor runs in this process), printed by cumulative time.
PROFILE = os.environ.get("INGEST_COUNT_PROFILE") == "1"
IGNORED = frozenset({"hello", "ismaster", "isMaster", "endSessions", "ping"})  # connection upkeep


class Counting(CommandListener):
    """Counts started commands under the current phase (None: not counted)."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.counts: Counter[tuple[str, str]] = Counter()
        self.trace: list[str] = []  # "<phase> <command> <collection>" of the commands since take()
        self.started_as: dict[int, str] = {}  # request id -> "<command> <collection>" (TIMES)
        self.micros: dict[str, list[int]] = {}

    def started(self, event: CommandStartedEvent) -> None:
        if self.phase is not None and event.command_name not in IGNORED:
            self.counts[(self.phase, event.command_name)] += 1
            target = event.command.get(event.command_name)
            line = f"{self.phase} {event.command_name} {target if isinstance(target, str) else ''}"
            if STACKS:
                frames = [f for f in traceback.extract_stack() if "/backend/" in f.filename]
                line += " <- " + " < ".join(f"{f.filename.split('/backend/')[1]}:{f.name}" for f in frames[::-1][:6])
            self.trace.append(line)
            if TIMES:
                self.started_as[event.request_id] = f"{event.command_name} {target if isinstance(target, str) else ''}"

    def succeeded(self, event: CommandSucceededEvent) -> None:
        name = self.started_as.pop(event.request_id, None)
        if name is not None:
            self.micros.setdefault(name, []).append(event.duration_micros)

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    def take(self) -> Counter[tuple[str, str]]:
        out, self.counts, self.trace = self.counts, Counter(), []
        return out


def _payload(phone: str, key_id: str, text: str) -> bytes:
    return json.dumps(
        {
            "event": "messages.upsert",
            "instance": "bench",
            "data": {
                "key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": key_id},
                "pushName": f"Cliente {phone[-4:]}",
                "message": {"conversation": text},
                "messageType": "conversation",
                "messageTimestamp": int(time.time()),
            },
        }
    ).encode()


def _summary(counts: Counter[tuple[str, str]], messages: int) -> dict[str, Any]:
    """Per message: total, per phase, and per phase and command name."""
    per: dict[str, Any] = {"messages": messages, "total": sum(counts.values()) / messages, "phases": {}}
    for (phase, name), n in sorted(counts.items()):
        entry = per["phases"].setdefault(phase, {"total": 0.0, "commands": {}})
        entry["total"] += n / messages
        entry["commands"][name] = n / messages
    return per


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its descendants (/proc; 0 without a pid)."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


async def _settled(watch: Any, raw_ids: list[str], limit: float = 600.0) -> None:
    """Until every delivery has an outcome (read with a client that is not counted)."""
    deadline = time.monotonic() + limit
    pending = list(raw_ids)
    while pending:
        doc = await watch.webhook_events_raw.find_one({"_id": pending[-1]}, {"status": 1})
        if doc is not None and doc.get("status") != "received":
            pending.pop()
            continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} deliveries not processed within {limit:.0f}s")
        await asyncio.sleep(0.002)


async def count_commands(
    mongo_url: str,
    source_db: str,
    conn_id: str,
    token: str,
    *,
    clients: int = 40,
    backlog: int = 400,
    store_pid: int | None = None,
) -> dict[str, Any]:
    """`store_pid`: the store's process (the bench's own FerretDB), whose CPU seconds during the
    backlog's drain are reported beside the bench process's (the backend's Python)."""
    db_name = f"{source_db}_count"
    settings = Settings(
        ENV="test",
        MONGO_URL=mongo_url,
        MONGO_DB=db_name,
        JWT_SECRET="bench-" + "x" * 40,
        WEBHOOK_POLL_SECONDS=10**6,  # no polled walks while counting: only the woken ones
        OUTBOUND_WORKER_ENABLED=False,
        LEDGER_FILE="",  # the gate's ledger in the database only: no file shared with other runs
    )
    counting = Counting()
    client = make_client(settings, command_listeners=[counting])
    runtime = open_runtime(client)  # as the lifespan does: this process's queues, hints and hooks
    db = durable_database(client, db_name)
    watch_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    watch = watch_client[db_name]
    try:
        # What every backend process runs before its first write: the hooks between domains
        # (without them nothing records the reports' contributions), migrations, indexes.
        gate = await gates.open_gate(db, settings)
        assert gate.ready, gate.errors
        conn = await watch_client[source_db].whatsapp_connections.find_one({"_id": conn_id})
        assert conn is not None
        await watch.whatsapp_connections.insert_one(conn)
        lanes = settings.WEBHOOK_LANES

        async def ack(phone: str, key: str) -> str:
            _, raw_id = await service.receive(
                db, connection_id=conn_id, token=token, event_hint=None, body=_payload(phone, key, key), lanes=lanes
            )
            return raw_id

        processor = WebhookProcessor(db, settings)
        stop = asyncio.Event()
        running = asyncio.create_task(processor.run(stop))
        await asyncio.sleep(0.5)  # lane loops subscribed, retired-lane check done
        # Warm-up: one first message per lane.
        warm: dict[int, str] = {}
        i = 0
        while len(warm) < lanes:
            phone = f"5511{9_000_000 + i:07d}"
            lane = service.lane_of(conn_id, f"{phone}@s.whatsapp.net", lanes)
            warm.setdefault(lane, phone)
            i += 1
        await _settled(watch, [await ack(phone, f"warm-{n}") for n, phone in warm.items()])

        result: dict[str, Any] = {}
        phones = [f"5521{i:07d}" for i in range(clients)]
        for label, suffix in (("new client's first message", "a"), ("existing conversation", "b")):
            total: Counter[tuple[str, str]] = Counter()
            for phone in phones:
                counting.take()
                counting.phase = "ack"
                raw_id = await ack(phone, f"iso-{suffix}-{phone}")
                counting.phase = "processing"
                await _settled(watch, [raw_id])
                counting.phase = None
                trace = list(counting.trace)
                total += counting.take()
            result[f"isolated: {label}"] = _summary(total, len(phones))
            result[f"isolated: {label}"]["last_message_trace"] = trace
            if TIMES:
                result[f"isolated: {label}"]["times"] = {
                    k: (len(v) / len(phones), sum(v) / len(v) / 1000) for k, v in counting.micros.items()
                }
                counting.micros = {}

        stop.set()
        await running
        if backlog <= 0:  # --count-backlog 0: the isolated figures only
            return result
        # Backlog: half new clients, half follow-ups of the isolated clients, acknowledged together.
        burst = [(f"5531{i:07d}", f"bl-{i}") for i in range(backlog // 2)]
        burst += [(phones[i % len(phones)], f"bl-x-{i}") for i in range(backlog - backlog // 2)]
        drained = WebhookProcessor(db, settings)
        every = set(range(lanes))
        await drained.run_once(every)  # its lane cursors read once, as a running process has
        counting.take()
        counting.phase = "ack"
        sem = asyncio.Semaphore(64)

        async def bounded(phone: str, key: str) -> str:
            async with sem:
                return await ack(phone, key)

        raw_ids = await asyncio.gather(*(bounded(p, k) for p, k in burst))
        counting.phase = "processing"
        processed = 0
        profile = cProfile.Profile(time.process_time) if PROFILE else None  # CPU, not waits
        cpu, store_cpu = time.process_time(), _cpu_seconds(store_pid)
        if profile is not None:
            profile.enable()
        for _ in range(20):  # passes over every lane until all are processed (one normally does)
            processed += await drained.run_once(every)
            with contextlib.suppress(RuntimeError):
                await _settled(watch, list(raw_ids), limit=0.0)
                break
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
            pstats.Stats(profile).sort_stats("cumulative").print_stats("/backend/", 60)
        counting.phase = None
        cpu, store_cpu = time.process_time() - cpu, _cpu_seconds(store_pid) - store_cpu
        by_target = Counter(line.split(" <- ")[0] for line in counting.trace)
        by_stack = Counter(counting.trace).most_common(40) if STACKS else []
        result["backlog: half first messages, half follow-ups"] = _summary(counting.take(), len(burst))
        result["backlog by collection"] = {k: n / len(burst) for k, n in by_target.most_common()}
        result["backlog by stack"] = {k: n / len(burst) for k, n in by_stack}
        result["backlog bench-process CPU ms per message"] = 1000 * cpu / len(burst)
        if store_pid is not None:
            result["backlog store CPU ms per message"] = 1000 * store_cpu / len(burst)
        result["backlog processed"] = processed
        return result
    finally:
        await runtime.close()
        await client.close()
        await watch_client.close()


def render_traces(result: dict[str, Any]) -> str:
    """The commands of the last message of each isolated scenario, in order, then the backlog's
    commands per message by collection."""
    out = []
    by_target = result.get("backlog by collection")
    if isinstance(by_target, dict):
        out.append("backlog per message: " + ", ".join(f"{k} {n:.2f}" for k, n in by_target.items()))
    for stack, n in (result.get("backlog by stack") or {}).items():
        out.append(f"backlog per message {n:.2f}: {stack}")
    if "backlog bench-process CPU ms per message" in result:
        own = result["backlog bench-process CPU ms per message"]
        out.append(f"backlog: bench-process CPU {own:.2f} ms per message")
    if "backlog store CPU ms per message" in result:
        out.append(f"backlog: store CPU {result['backlog store CPU ms per message']:.2f} ms per message")
    for label, per in result.items():
        if isinstance(per, dict) and "last_message_trace" in per:
            out.append(f"{label}: " + "; ".join(per["last_message_trace"]))
            for name, (n, ms) in sorted((per.get("times") or {}).items(), key=lambda kv: -kv[1][0] * kv[1][1]):
                out.append(f"{label}: {name}: {n:.2f} per message x {ms:.2f} ms = {n * ms:.2f} ms")
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    """A markdown table: per message, total and per phase, with the commands by name."""
    lines = [
        "| scenario | messages | commands per message | ack | processing |",
        "|---|---:|---:|---|---|",
    ]
    for label, per in result.items():
        if not isinstance(per, dict) or "phases" not in per:
            continue
        cells = []
        for phase in ("ack", "processing"):
            entry = per["phases"].get(phase)
            if entry is None:
                cells.append("0")
                continue
            names = ", ".join(f"{name} {n:.2f}" for name, n in sorted(entry["commands"].items()))
            cells.append(f"**{entry['total']:.2f}** ({names})")
        lines.append(f"| {label} | {per['messages']} | **{per['total']:.2f}** | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
