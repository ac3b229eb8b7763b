"""Prometheus metrics for realtime delivery (exposed on /metrics with the HTTP ones)."""

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("iaze_realtime_published_total", "Feed records written by this process", ["type"])
ERRORS = Counter(
    "iaze_realtime_errors_total",
    "Realtime failures that did not fail the domain write (feed write, bus, pump)",
    ["stage"],
)
DISPATCHED = Counter("iaze_realtime_dispatched_total", "Feed records dispatched to this process's sockets")
GAP_READS = Counter("iaze_realtime_gap_reads_total", "Records the hub had to read back because no notice carried them")
POLL_RECOVERED = Counter("iaze_realtime_poll_recovered_total", "Records found by the tail poll, not by a notice")
SLOW_CONSUMERS = Counter("iaze_realtime_slow_consumers_total", "Sockets closed with 4408 because their queue was full")
CONNECTIONS = Gauge("iaze_realtime_connections", "Open realtime sockets on this process")
