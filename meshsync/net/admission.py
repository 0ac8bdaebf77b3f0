"""Bounded unauthenticated load: caps on handshakes, shedding, rate-limited refusals.

Anyone on the Wi-Fi can open TCP connections to the sync port. Until a connection has
completed mutual TLS and the identity check it is *unauthenticated*; the listener holds
at most :attr:`ConnectionLimits.max_handshakes` of them, and at most
:attr:`ConnectionLimits.max_per_source` from one source address. When a new connection
would exceed a cap, an older unauthenticated one is shed to make room: the oldest *idle*
one first (it has sent no byte yet, so no TLS state was ever allocated for it), else the
oldest one still in its handshake. Authenticated sessions are never counted here and
never shed, so an honest peer that got through keeps syncing during a flood.

Refusals (TLS failures, timeouts, shed connections) are logged by :class:`RefusalLog`:
the first few of each stage per interval line by line, the rest as one count per stage
("... and 10,482 more in the last 60 s"), so a flood cannot fill the disk with log.

**Memory after a flood.** Each connection that starts TLS costs an OpenSSL object of
tens of KB; freed, that memory stays in glibc's heap (fragmented, not returned to the
system), so RSS would stay at the flood's peak. After an interval that saw more
refusals than it logged (a flood), :func:`release_memory` collects garbage and hands
free heap pages back (``malloc_trim``); measured, RSS then returns near its baseline.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

#: Defaults of the daemon keys ``max_handshakes``, ``max_handshakes_per_source`` and
#: ``refusal_log_interval_s`` (daemon/config.py); ``meshsync serve`` uses the same.
DEFAULT_MAX_HANDSHAKES = 256
DEFAULT_MAX_PER_SOURCE = 32
DEFAULT_REFUSAL_LOG_INTERVAL_S = 60.0
#: Refusals of one stage logged line by line per interval before they are only counted.
REFUSAL_LINES_PER_INTERVAL = 5


@dataclass(frozen=True)
class ConnectionLimits:
    """Caps on unauthenticated connections held by one listener.

    ``max_handshakes``: connections accepted but not yet authenticated (>= 1).
    ``max_per_source``: of those, from one source IP address (>= 1).
    ``refusal_log_interval_s``: seconds per refusal-log window (> 0).
    """

    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    max_per_source: int = DEFAULT_MAX_PER_SOURCE
    refusal_log_interval_s: float = DEFAULT_REFUSAL_LOG_INTERVAL_S


class Ticket:
    """One unauthenticated connection held by an :class:`Admission`.

    ``scope`` is cancelled when the connection is shed; ``shed_reason`` then says why.
    ``idle`` is True until the peer sent its first byte.
    """

    __slots__ = ("idle", "scope", "shed_reason", "source")

    def __init__(self, source: str, scope: trio.CancelScope) -> None:
        self.source, self.scope = source, scope
        self.idle = True
        self.shed_reason: str | None = None


class Admission:
    """The unauthenticated connections of one listener, oldest first. Trio thread only."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._pending: dict[Ticket, None] = {}  # insertion order = age
        self._per_source: Counter[str] = Counter()
        self.shed_total = 0

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, source: str, scope: trio.CancelScope) -> Ticket:
        """Hold a new connection from IP ``source`` whose task runs in ``scope``; shed
        older unauthenticated ones first if a cap is reached. Returns its ticket."""
        limits = self.limits
        if self._per_source[source] >= limits.max_per_source:
            self._shed(lambda t: t.source == source,
                       f"more than {limits.max_per_source} unauthenticated connections "
                       f"from {source} (max_handshakes_per_source)")
        if len(self._pending) >= limits.max_handshakes:
            self._shed(lambda t: True, f"more than {limits.max_handshakes} unauthenticated "
                                       "connections (max_handshakes)")
        ticket = Ticket(source, scope)
        self._pending[ticket] = None
        self._per_source[source] += 1
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Forget ``ticket`` (authenticated, or finished); a no-op if already gone."""
        if ticket in self._pending:
            del self._pending[ticket]
            self._per_source[ticket.source] -= 1
            if not self._per_source[ticket.source]:
                del self._per_source[ticket.source]

    def _shed(self, matches: Callable[[Ticket], bool], reason: str) -> None:
        """Shed the oldest idle matching ticket, else the oldest matching one."""
        victim: Ticket | None = None
        for ticket in self._pending:
            if matches(ticket):
                if ticket.idle:
                    victim = ticket
                    break
                victim = victim or ticket
        if victim is not None:
            self.release(victim)
            victim.shed_reason = reason
            victim.scope.cancel()
            self.shed_total += 1


class RefusalLog:
    """Log refused connections: per stage, the first :data:`REFUSAL_LINES_PER_INTERVAL`
    of each ``interval_s`` window line by line, then one count line per stage.

    ``clock`` returns seconds (monotonic); tests may pass their own.
    """

    def __init__(self, logger: logging.Logger, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.interval_s, self.clock = logger, interval_s, clock
        self._window_end = clock() + interval_s
        self._logged: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()

    def refused(self, address: Any, stage: str, reason: str) -> None:
        """One refused connection from ``address`` ((host, port)) at ``stage``."""
        if self.clock() >= self._window_end:
            self.flush()
        if self._logged[stage] < REFUSAL_LINES_PER_INTERVAL:
            self._logged[stage] += 1
            self.log.warning("refused %s:%s at %s: %s", address[0], address[1], stage, reason)
        else:
            self._suppressed[stage] += 1

    def flush(self) -> int:
        """Log the counts of the window's unlogged refusals; start a new window.
        Returns how many refusals were only counted."""
        counted = sum(self._suppressed.values())
        for stage, count in sorted(self._suppressed.items()):
            self.log.warning("refused ... and %s more at %s in the last %s", f"{count:,}",
                             stage, _span(self.interval_s))
        self._logged.clear()
        self._suppressed.clear()
        self._window_end = self.clock() + self.interval_s
        return counted

    async def run(self) -> None:
        """Flush at the end of every window, forever (a task of the listener); flush
        once more when cancelled (shutdown), so no count is lost."""
        try:
            while True:
                await trio.sleep(max(0.0, self._window_end - self.clock()))
                if self.clock() >= self._window_end and self.flush():
                    release_memory()
        finally:
            self.flush()


def release_memory() -> bool:
    """Collect cyclic garbage (a refused connection's exception chain may still hold its
    TLS object), then return free heap memory to the system (glibc ``malloc_trim(0)``).
    False where the C library has no such call (musl, Android's bionic). Takes
    milliseconds on a node's heap; called at most once per refusal-log interval."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def _span(seconds: float) -> str:
    return "minute" if seconds == 60 else f"{seconds:g} s"
