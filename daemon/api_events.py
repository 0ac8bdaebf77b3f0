"""``GET /api/events``: the daemon's events (:mod:`.events`) as server-sent events.

Each event is sent as ``id: SEQ``, ``event: TYPE`` and ``data: JSON`` (the whole event,
``seq`` and ``type`` included); a comment line every :data:`KEEPALIVE_S` seconds keeps
idle connections open. Guarded as every route (token or session cookie, Host).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import trio
from meshsync.daemon.api import Handler, NodeService
from meshsync.daemon.events import EventBus
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE_S = 15.0


def sse(event: dict[str, Any]) -> bytes:
    """One event in the text/event-stream format."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event['seq']}\n" if event.get("seq") is not None else ""
    return f"{head}event: {event['type']}\ndata: {data}\n\n".encode()


async def stream(bus: EventBus) -> AsyncIterator[bytes]:
    """Events as they are published, until the client goes (then it unsubscribes)."""
    sub = bus.subscribe()
    try:
        yield f": meshsync events from seq {bus.seq + 1}\n\n".encode()
        while True:
            with trio.move_on_after(KEEPALIVE_S):
                await sub.wakeup.wait()
            events = sub.take()
            if not events:
                yield b": keep-alive\n\n"
            for event in events:
                yield sse(event)
    finally:
        bus.unsubscribe(sub)


def event_routes(service: NodeService) -> dict[str, Handler]:
    """The streaming GET routes (path -> handler), to be guarded by :mod:`.api`."""
    async def events(request: Request) -> Response:
        return StreamingResponse(stream(service.events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    return {"/api/events": events}
