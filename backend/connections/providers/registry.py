"""Which adapter serves a connection's `provider`. The WhatsApp Cloud API joins here."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from backend.connections.providers import evolution
from backend.connections.providers.base import InboundEvent, WhatsAppProvider
from backend.core.config import Settings


def build(name: str, settings: Settings, http: httpx.AsyncClient) -> WhatsAppProvider:
    if name == evolution.NAME:
        return evolution.EvolutionProvider(
            http, base_url=settings.EVOLUTION_BASE_URL, api_key=settings.EVOLUTION_API_KEY
        )
    raise ValueError(f"unknown provider {name!r}")


def parse_webhook(name: str, payload: Any, *, event_hint: str | None) -> list[InboundEvent]:
    if name == evolution.NAME:
        return evolution.parse_webhook(payload, event_hint=event_hint)
    raise ValueError(f"unknown provider {name!r}")


def media_contents(name: str, payload: Any, *, event_hint: str | None) -> dict[str, dict[str, Any]]:
    """By provider message id, a delivery's media messages' content as the provider's media
    download takes it (`fetch_media`'s `content`)."""
    if name == evolution.NAME:
        return evolution.media_contents(payload, event_hint=event_hint)
    raise ValueError(f"unknown provider {name!r}")


@asynccontextmanager
async def http_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(settings.EVOLUTION_TIMEOUT_SECONDS, connect=min(5.0, settings.EVOLUTION_TIMEOUT_SECONDS))
    async with httpx.AsyncClient(timeout=timeout) as client:
        yield client
