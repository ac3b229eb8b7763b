"""Process-local wake-up of the webhook processors when this process stores a delivery.
Only a latency hint: processors also poll, which is what finds other processes' deliveries."""

import asyncio

_events: set[asyncio.Event] = set()


def subscribe() -> asyncio.Event:
    event = asyncio.Event()
    _events.add(event)
    return event


def unsubscribe(event: asyncio.Event) -> None:
    _events.discard(event)


def wake() -> None:
    for event in _events:
        event.set()
