"""The backend as bench/media_bench.py starts it, with every database command counted
(`--count-commands FILE` there): PyMongo command monitoring on the process's client, each command
filed by who sent it and on what collection. A SIGUSR1 writes the counts so far to MEDIA_COUNT_FILE
(JSON), so the bench takes one snapshot before the webhook + fetch phase and one after it.

Who sent it, from the coroutine chain on the stack when the command starts: "media" when a frame
of backend/media/ is on it (the fetcher, the store, the status move it asks for), "ingestion" when
one of backend/webhooks/ is (the acknowledgement and the processor: delivery log, client, ticket,
message, counters, reports), "other:<file>:<function>" for the rest, by the outermost backend
frame: commands sent from a task of their own (group-commit writers, shared reads, sweeps), whose
stack no longer shows who asked for them.
"""

import json
import os
import signal
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

import backend.app
from backend.core import db as core_db

CALLERS = os.environ.get("MEDIA_COUNT_CALLERS") == "1"
IGNORED = frozenset({"hello", "ismaster", "isMaster", "endSessions", "ping", "buildInfo"})


def _owner(stack: list[traceback.FrameSummary]) -> str:
    files = [f.filename for f in stack]
    if any("/backend/media/" in f for f in files):
        return "media"
    if any("/backend/webhooks/" in f for f in files):
        return "ingestion"
    # A task of its own (a group-commit writer, a shared read, a sweep): named by its first frame.
    ours = [f for f in stack if "/backend/" in f.filename]
    return f"other:{ours[0].filename.split('/backend/')[1]}:{ours[0].name}" if ours else "other"


class Filing(CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name in IGNORED:
            return
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        stack = traceback.extract_stack()
        owner = _owner(stack)
        # MEDIA_COUNT_CALLERS=1: each line also names the backend function nearest the driver.
        nearest = [f for f in stack if "/backend/" in f.filename][-1:] if CALLERS else []
        at = "".join(f" @{f.filename.split('/backend/')[1]}:{f.name}" for f in nearest)
        self.counts[f"{owner} {event.command_name} {collection}{at}"] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def main() -> None:
    filing = Filing()
    out = Path(os.environ["MEDIA_COUNT_FILE"])
    make_client = core_db.make_client

    def counted_client(settings: Any, **_: Any) -> Any:
        return make_client(settings, command_listeners=[filing])

    backend.app.make_client = counted_client  # type: ignore[assignment]  # the same signature, with the listener

    def dump(*_: Any) -> None:
        partial = out.with_suffix(".partial")
        partial.write_text(json.dumps(dict(filing.counts)))
        partial.replace(out)  # whole or absent for the bench that waits on it

    signal.signal(signal.SIGUSR1, dump)
    port = int(os.environ["MEDIA_COUNT_PORT"])
    uvicorn.run(
        "backend.app:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


def summary(before: dict[str, int], after: dict[str, int], messages: int) -> str:
    """Per message, by owner then command and collection, the largest first."""
    spent = Counter({k: after.get(k, 0) - before.get(k, 0) for k in after})
    lines, by_owner = [], Counter[str]()
    for key, n in spent.items():
        by_owner[key.split(" ", 1)[0]] += n
    total = sum(by_owner.values())
    lines.append(f"commands per message: {total / messages:.1f} ({total} for {messages} messages)")
    for owner, n in by_owner.most_common():
        lines.append(f"  {owner}: {n / messages:.1f}")
        for key, k in spent.most_common():
            if key.startswith(owner + " ") and k:
                lines.append(f"    {k / messages:6.2f}  {key.split(' ', 1)[1]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
