"""One sync session per pair of devices.

When two devices dial each other at the same moment, the connection dialled by the
device with the smaller key wins: the larger side refuses the other's incoming
session while its own outgoing one is running, the smaller side accepts. Either way
exactly one session runs and neither waits for a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OUTGOING, INCOMING = "outgoing", "incoming"


@dataclass
class SessionRegistry:
    """Tracks running sessions by peer device key. Used on the trio thread only."""

    own_key: bytes
    active: dict[bytes, str] = field(default_factory=dict)

    def acquire(self, peer: bytes, direction: str) -> str | None:
        """Register a session; returns None if it may run, else the reason it may not."""
        running = self.active.get(peer)
        if running is None:
            self.active[peer] = direction
            return None
        if direction == INCOMING and running == OUTGOING and peer < self.own_key:
            self.active[peer] = INCOMING  # the smaller key's dial wins the race
            return None
        return f"a {running} session with this device is already running"

    def release(self, peer: bytes, direction: str) -> None:
        """Forget a finished session (if it is still the registered one)."""
        if self.active.get(peer) == direction:
            del self.active[peer]

    def busy(self, peer: bytes) -> bool:
        """True if a session with ``peer`` is running."""
        return peer in self.active
