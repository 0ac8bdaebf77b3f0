"""The daemon's in-process event bus, read by apps as server-sent events
(``GET /api/events``, :mod:`.api_events`).

Events are small JSON objects: ``{"seq": N, "type": T, "at_ms": MS, ...}``; ``seq``
grows by one per event published (a monotonic sequence: a client can tell order and
gaps). Each subscriber has a bounded queue (:data:`QUEUE_SIZE`): when a slow client
falls behind, the oldest events are dropped and it is told with a ``lost`` event
(``{"lost": COUNT}``) before the next one it gets. Subscribers are removed when they
disconnect. :meth:`EventBus.publish` may be called from any thread.

The types (:data:`EVENT_TYPES`) and their members are described in the OpenAPI
document (``/api/events``) and the README.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import trio

#: Events a subscriber may fall behind by before the oldest are dropped.
QUEUE_SIZE = 256

#: Every event type, and what it says (documented in OpenAPI and the README).
EVENT_TYPES: dict[str, str] = {
    "sync.started": "This daemon dialled a peer for a sync: `peer` (device id, null when "
                    "not known yet), `address`.",
    "sync.finished": "A sync session ended (dialled or accepted): `direction`, `peer`, "
                     "`changes_sent`, `changes_received`, `duplicates`, `converged`, "
                     "`error` (null when it succeeded) and `duration_ms`; a dial that "
                     "failed before any session has `address`, the error and no "
                     "duration.",
    "sync.progress": "A session in flight moved (at most every half second): `peer`, "
                     "`direction`, `changes_received` of `changes_offered` (what the "
                     "peer's version vector holds beyond this node's; null until the "
                     "vectors were exchanged), `changes_sent` of `changes_to_send`, "
                     "`bytes_received`, `bytes_sent` (so far; no total is announced) and "
                     "`started_ms`.",
    "changes.received": "A session brought new changes: `peer` and `count`.",
    "conflicts": "The number of records with open conflicts changed: `conflicts`.",
    "uplink": "The uplink's state changed: `state` (up or down) and `last_error`.",
    "custody": "The custody summary changed: `feeds` and `receipts` (counts).",
    "clock.warning": "A session found the clocks apart: `warning` (one line).",
    "lost": "This client fell behind and missed `lost` events (the oldest were dropped).",
}


class Subscriber:
    """One client's queue of events (see the module docs)."""

    def __init__(self, size: int, lock: threading.Lock) -> None:
        self.queue: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = lock
        self.lost = 0
        self.wakeup = trio.Event()

    def take(self) -> list[dict[str, Any]]:
        """The events waiting (a ``lost`` event first if some were dropped); call on
        the trio thread."""
        with self._lock:
            events = list(self.queue)
            self.queue.clear()
            lost, self.lost = self.lost, 0
        if lost:
            events.insert(0, {"type": "lost", "lost": lost,
                              "seq": events[0]["seq"] if events else None})
        if self.wakeup.is_set():
            self.wakeup = trio.Event()
        return events


class EventBus:
    """Publish events to every subscriber (see the module docs)."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.size = size
        self.seq = 0
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None

    def subscribe(self) -> Subscriber:
        """A new subscriber (call on the trio thread); :meth:`unsubscribe` it after."""
        self._token = trio.lowlevel.current_trio_token()
        sub = Subscriber(self.size, self._lock)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Stop delivering to ``sub`` (its client disconnected)."""
        with self._lock:
            self._subscribers.discard(sub)

    def subscribers(self) -> int:
        """How many clients are listening."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, kind: str, **data: Any) -> dict[str, Any]:
        """Send event ``kind`` with ``data`` to every subscriber; the event."""
        with self._lock:
            self.seq += 1
            event = {"seq": self.seq, "type": kind, "at_ms": int(time.time() * 1000), **data}
            for sub in self._subscribers:
                if len(sub.queue) == sub.queue.maxlen:
                    sub.lost += 1
                sub.queue.append(event)
            subs, token = list(self._subscribers), self._token
        if subs and token is not None:
            for sub in subs:
                try:
                    token.run_sync_soon(_wake, sub)
                except trio.RunFinishedError:
                    return event
        return event


def _wake(sub: Subscriber) -> None:
    """Wake ``sub``'s client (on the trio thread)."""
    sub.wakeup.set()
