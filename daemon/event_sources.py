"""What the daemon publishes on its event bus (:mod:`.events`), and when: sessions as
they start and end, and changes of state (conflicts, uplink, custody) noticed after
each recount."""

from __future__ import annotations

from typing import Any

from meshsync.daemon.events import EventBus

from meshsync.model.identity import device_id
from meshsync.protocol.events import SessionSummary


class EventSources:
    """Turns the daemon's hooks into events on ``bus``; remembers what it last said
    about states so it speaks only of changes."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._said: dict[str, Any] = {}
        self._progress: dict[tuple[str | None, str], tuple[int, ...]] = {}

    def dialled(self, peer: str | None, address: tuple[str, int]) -> None:
        """An outgoing session starts."""
        self.bus.publish("sync.started", peer=peer, address=f"{address[0]}:{address[1]}")

    def dial_failed(self, peer: str | None, address: tuple[str, int], error: str) -> None:
        """A dial failed before any session: its ``sync.finished``, with ``error``."""
        self.bus.publish("sync.finished", direction="outgoing", peer=peer,
                         address=f"{address[0]}:{address[1]}", changes_sent=0,
                         changes_received=0, duplicates=0, converged=False, error=error,
                         duration_ms=None)

    def session(self, direction: str, summary: SessionSummary) -> None:
        """A session ended: ``changes.received`` and ``clock.warning`` if any, then
        ``sync.finished``."""
        peer = device_id(summary.peer) if summary.peer else None
        duration = max(0, summary.finished_ms - summary.started_ms)
        if summary.changes_received:
            self.bus.publish("changes.received", peer=peer, count=summary.changes_received)
        for warning in summary.clock_warnings:
            self.bus.publish("clock.warning", warning=warning)
        self.bus.publish("sync.finished", direction=direction, peer=peer,
                         changes_sent=summary.changes_sent,
                         changes_received=summary.changes_received,
                         duplicates=summary.duplicates, converged=summary.converged,
                         error=summary.error, duration_ms=duration)

    def progress(self, flying: list[dict[str, Any]]) -> None:
        """``sync.progress`` for each session in flight (``Daemon.in_flight`` rows)
        whose counts moved since the last call."""
        now: dict[tuple[str | None, str], tuple[int, ...]] = {}
        for row in flying:
            key = (row["peer"], row["direction"])
            figures = now[key] = (row["changes_received"], row["changes_sent"],
                                  row["bytes_received"], row["bytes_sent"],
                                  -1 if row["changes_offered"] is None
                                  else row["changes_offered"])
            if self._progress.get(key) != figures:
                self.bus.publish("sync.progress", **row)
        self._progress = now

    def state(self, conflicts: int, uplink: dict[str, Any] | None,
              custody: dict[str, Any]) -> None:
        """After a recount: one event per state that changed since the last call
        (nothing on the first call, which only remembers)."""
        now: dict[str, dict[str, Any]] = {
            "conflicts": {"conflicts": conflicts},
            "custody": {"feeds": len(custody.get("feeds") or []),
                        "receipts": len(custody.get("receipts") or [])},
        }
        if uplink is not None:
            now["uplink"] = {"state": uplink.get("state"),
                             "last_error": uplink.get("last_error")}
        first = not self._said
        for kind, data in now.items():
            if self._said.get(kind) != data:
                self._said[kind] = data
                if not first:
                    self.bus.publish(kind, **data)
