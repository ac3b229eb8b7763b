"""Durable outbound sending: replies queued before any network call, sent by a worker."""
