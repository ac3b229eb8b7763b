"""Prometheus metrics: HTTP traffic, labelled by route template (bounded cardinality), and the
business figures (README, Metrics). Defined here, where every domain may reach them; incremented
where the thing happens, or refreshed from the database on scrape (backend/monitoring)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("iaze_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "iaze_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- Business: counted where it happens (per process; sum() across processes) ---
MESSAGES = Counter(
    "iaze_messages_total",
    "Conversation messages stored by this process, per tenant; direction in = from the client, out = to the client",
    ["reseller_id", "direction"],
)
FIRST_RESPONSE = Histogram(
    "iaze_first_response_seconds",
    "From a ticket's first client message to the first agent reply after it, observed at that reply",
    buckets=(15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)
# Incremented by inbound media fetching (backend/media, issue 15): one per download that failed
# for good or for now. `reason`: a short fixed word (timeout, http_4xx, http_5xx, too_large,
# refused, error), never a message text, so the label stays bounded.
MEDIA_FETCH_FAILURES = Counter(
    "iaze_media_fetch_failures_total", "Inbound media downloads that failed, by reason", ["reason"]
)

# Incremented by the durable workers when they give up an item whose stored documents do not read
# (backend/core/attempts.py, `QueueWalk`): `worker` "outbound" (a reply ended failed, or sent when
# the provider took it) or "media" (a fetch ended failed). Each one is an operator's to look at.
GIVEN_UP = Counter(
    "iaze_given_up_total", "Replies and media fetches given up on documents that do not read", ["worker"]
)
for _worker in ("outbound", "media"):  # at 0 from the start: increase() misses a series born at 1
    GIVEN_UP.labels(worker=_worker)

# Incremented by the webhook processor when a delivery is kept failed after its attempts: `kind`
# "retryable" (errors that may pass: the sweep runs it again later) or "final" (an error no retry
# fixes, or a waiting one the sweep gave up: an operator's scripts/reprocess_webhooks.py, once the
# cause is fixed). By the sweep (webhooks.service `run_waiting`) for what is not yet final:
# "waiting_postponed" (a run failed on an error no retry fixes; it runs again later) and
# "waiting_unreadable" (a waiting document that does not read; once per process).
WEBHOOK_FAILED = Counter("iaze_webhook_failed_total", "Webhook deliveries kept failed, by kind", ["kind"])
CONNECTION_WEBHOOK_REPAIRED = Counter(
    "iaze_connection_webhook_repaired_total", "Provider webhooks the connection watch found drifted and set again"
)
CAUGHT_UP = Counter(
    "iaze_caught_up_messages_total",
    "Messages the provider kept that had not reached IAZE, filed by a catch-up (after a restart, a webhook drift, "
    "or scripts/catch_up_messages.py)",
)
CONNECTION_CHECK_FAILED = Counter(
    "iaze_connection_check_failed_total", "Connection watch checks that failed (the provider or the store away)"
)

# --- Business: read from the database on scrape (backend/monitoring); the same in every process ---
TICKETS = Gauge("iaze_tickets", "Tickets per tenant and state (the ticket counters)", ["reseller_id", "status"])
OUTBOX_BACKLOG = Gauge("iaze_outbox_backlog", "Outbound queue entries past the worker's cursor (not yet all settled)")
OUTBOX_OLDEST_PENDING = Gauge(
    "iaze_outbox_oldest_pending_seconds", "Age of the oldest reply still waiting to be sent (0 when none)"
)
WEBHOOK_BACKLOG = Gauge("iaze_webhook_lane_backlog", "Stored deliveries past the lane's saved cursor", ["lane"])
WEBHOOK_LAG = Gauge(
    "iaze_webhook_lane_lag_seconds",
    "Age of the lane's oldest stored delivery not processed yet (0 when none)",
    ["lane"],
)
WEBHOOK_WAITING = Gauge(
    "iaze_webhook_waiting",
    "Webhook deliveries waiting to be run again (edits before their message, failures that may pass), owed catch-ups",
    ["reason"],
)
SCHEDULED_OVERDUE = Gauge(
    "iaze_scheduled_overdue_seconds",
    "How long past its time the soonest scheduled message still waiting is (0 when none is late)",
)
REFRESH_ERRORS = Counter(
    "iaze_metrics_refresh_errors_total", "Scrapes whose database-read gauges could not be refreshed (kept as before)"
)
