"""Inbound provider webhooks: stored raw first, then processed (and reprocessable)."""
