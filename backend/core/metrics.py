"""Prometheus metrics for HTTP traffic, labelled by route template (bounded cardinality)."""

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter("iaze_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "iaze_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
