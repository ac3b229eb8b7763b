"""Tuned numbers, each with its reason and the measurement behind it (docs/BENCHMARKS.md); the
domain modules import them. Operator settings are in config.py; product limits (page sizes, field
lengths) and bounds on retry loops are rules, and stay with their rule.
"""

import gc

# --- Garbage collector (BENCHMARKS.md "Realtime", garbage-collection pauses, 5ae57c7) ----------------
# A young collection every 700 allocations (the default) promoted whatever was in flight at that
# instant (a pending read, a queued frame) to the old generation, which then set off a full
# collection every ~20-40 s: a walk over every socket's objects, 100-500 ms during which no socket
# of the process is served. Every 10,000, in-flight objects mostly die young: in the realtime
# benchmark no full collection ran in a minute and no young one took over ~16 ms.
GC_THRESHOLDS = (10_000, 20, 10)  # young, middle, old
# Tuple tracking: what the hub keeps for replays (REPLAY_PER_TENANT per tenant: realtime/hub.py
# `Entry`, realtime/audience.py `Side`) is flat tuples of ints, strings and None on purpose. CPython
# stops tracking such a tuple at a collection (one nesting level each), within the first two young
# ones, so the replay cache never enters a full collection. As dataclasses with dicts they were the
# bulk of what got promoted: a full collection every ~40 s at 200 events/s, 100-150 ms delivery
# pauses. tests/realtime/test_feed.py checks an entry is untracked.


def tune_gc() -> None:
    """The last start-up step: what start-up allocated (modules, routes, schemas) lives as long
    as the process; frozen, full collections stop walking it again and again."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# --- Group commit (core/group_commit.py; BENCHMARKS.md "WhatsApp ingest", 55c2e52) ----------------------
# On FerretDB one insert is one SQLite commit with its fsync: ~1,400 single inserts/s against
# ~13,000 documents/s in batches of 32.
INSERT_BATCH = 500  # documents per command; the driver splits further by size (16/48 MB limits)
# Commands per collection at once, the next batch filling while one commits. One: SQLite has a single
# writer, and concurrent commits there wait on each other in sleeps (MongoDB would take more).
INSERTS_IN_FLIGHT = 1

# --- Plain appends of gap-free logs (core/seqlog.py: the realtime feed, the reports' and counters'
# logs, the outbound and media queues) ---------------------------------------------------------------
# Entries per insert, at most 100: FerretDB v1.24.2 inserts in internal batches of 100 and, after a
# duplicate in one of them, goes on with the next one even for an ordered insert (msg_insert.go),
# which would leave a hole; within one internal batch it stops where MongoDB does.
APPEND_BATCH = 100
APPEND_LOSSES_BEFORE_SEARCH = 4  # numbers lost to another writer before looking for the real head again
APPEND_TRANSIENT_RETRIES = 4  # FerretDB answers SQLITE_BUSY under write bursts; backoff 0.05 s x 4^n

# --- The realtime feed (realtime/records.py, hub.py, bus.py) ----------------------------------------
REPLAY_PER_TENANT = 4096  # records kept per tenant for replays of short reconnect gaps, without reads
CATCH_UP_BATCH = 64  # records read at once when a replay goes to the database
MISSING_RETRIES = 50  # 10 ms waits for an announced seq not readable yet; then the tail poll finds it
QUIET_POLL_FACTOR = 10  # with Redis connected a lost notice shows at the next event: a rarer tail poll
NOTICE_GRACE_SECONDS = 0.05  # an out-of-order notice (n+1 before n) is waited for this long, then read
BUS_TIMEOUT_SECONDS = 2.0  # a Redis publish or connect taking longer is given up (the poll delivers)
# How long a tenant's feed (its pump and replay cache) outlives its last socket in a process. After
# a network blip or a proxy restart every socket of the tenant drops and reconnects with since=
# within seconds: with the feed kept, each replay comes from memory; dropped at once, each socket
# would read its whole gap from the store (the reconnect storm's cost; BENCHMARKS.md "Realtime at
# scale").
FEED_LINGER_SECONDS = 60.0

# --- Inbound webhook lanes (webhooks/processor.py, signals.py) --------------------------------------
LANE_CURSOR_EVERY = 100  # entries between cursor saves within a walk (a restart re-reads fewer)
# Entries a walk handles per processing slot before queueing for one again: bounds how long one
# chat's burst holds up another lane (BENCHMARKS.md "One chat's burst": 18 entries with one slot).
LANE_BATCH = 20
# A quiet lane's poll inside this process's own block reads the next block's marker only every
# this many polls, unless another process announced a block of it (webhooks/processor.py
# `_idle_end`): 32 idle lanes cost ~1 read/s instead of 32 (bench/media_bench.py counted ~1.5 of
# ~33 commands per message at ~20 msg/s as these reads), and a block nobody announced is still
# found within this many polls.
LANE_FOREIGN_CHECK_EVERY = 30
RETIRED_CHECK_SECONDS = 300.0  # how often a running processor looks for retired lanes again
# A walk stopped at another process's delivery that that process's acknowledgement claimed (it is
# about to make it, within milliseconds as a rule) walks again after this, doubling up to the poll
# period while it stays held: lanes whose deliveries alternate between processes (behind a
# balancer) move at the pace of processing, not of the poll, and a dead holder costs polls only.
LANE_HELD_RECHECK_SECONDS = 0.01
# Once a walk has met a delivery another process's processor acknowledged, this process's
# acknowledgements claim no first attempt for this long: where several processes share the lanes,
# walks that claim whatever they reach first kept two backends faster than walks holding back for
# each other (BENCHMARKS.md "Session 16", `ingest_bench --processor twin`). A process alone claims.
HANDED_CLAIMS_PAUSE_SECONDS = 600.0
HANDED_MAX = 20_000  # stored deliveries held per processor; past that it reads them back
FAILED_ATTEMPTS_KEPT = 10_000  # failed attempts a webhook processor remembers (its `_failed`)
HANDED_MAX_BYTES = 64 * 1024  # larger bodies are read back rather than held

# --- Ticket counters (tickets/counters.py; BENCHMARKS.md "Ticket counts") ---------------------------
COUNTS_COMPACT_EVERY = 8  # a writer folds the delta log into the totals at every 8th entry
COUNTS_READER_COMPACTS_AT = 4 * COUNTS_COMPACT_EVERY  # a reader walking a longer tail folds it (a folder died)
# One compaction folds at most this many entries (a tenant idle for long, or the first run after
# the backfill); the next compaction goes on from there.
COUNTS_MAX_FOLD = 5_000

# --- Elsewhere -----------------------------------------------------------------------------------------
OUTBOUND_CHAT_HINTS = 10_000  # chats whose last queue position a process remembers
UNREAD_INBOUND_HINT_EVERY = 4  # a ticket's stored inbound-count hint: raised every 4th number (unread/)
INGEST_CHAT_HINTS = 20_000  # inbound chats whose client and last ticket ids a process remembers
MEDIA_HANDED = 1_000  # media messages handed from their intake to this process's fetcher, not yet looked at
ATTEMPT_HINTS = 20_000  # messages whose send or fetch attempts a process's worker has looked at
QUEUE_KEPT = 10_000  # queue entries (a few hundred bytes each) a process keeps from its own appends for its walk
# The ticket sweep rests this many times its last scan: under a tenth of the time on FerretDB, where
# the scan reads all of ticket_events and messages (tickets/sweep.py: 11-16 s at 100k messages).
SWEEP_IDLE_FACTOR = 9
# How long a send trusts the provider's answer that a connection's session is open (outbound/worker.py
# `_session_open`): one state request per connection per second at most, whatever the send rate.
SESSION_STATE_FRESH_SECONDS = 1.0
WINNER_READS = 5  # reads of a lost race's winner before giving up for now (core/retry.py)
WINNER_FIRST_WAIT = 0.02  # seconds before the second read, doubled each time (0.3 s in all)
