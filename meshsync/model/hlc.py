"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014).

A timestamp is one 64-bit integer: the upper 48 bits are wall-clock milliseconds
since the Unix epoch, the lower 16 bits a logical counter. Timestamps of one device
strictly increase across all its feeds, and an op's id is ``(hlc, author)``, so a
change of ``n`` ops reserves ``n`` consecutive timestamps.

**Drift rule.** When a device receives a timestamp ``t`` and its own wall clock
reads ``now``, it advances its clock to ``max(own, min(t, now + MAX_CLOCK_DRIFT_MS))``.
A change stamped further ahead than the limit is *not* refused (causality, not the
clock, decides merges, see :mod:`meshsync.replica.crdt`) but it is reported as a clock
warning naming the author and by how much it is ahead, and it cannot drag this
device's clock (and through it the mesh's) more than the limit past real time. The
limit is :data:`meshsync.model.limits.MAX_CLOCK_DRIFT_MS` (10 minutes); the warning starts
one minute past it (:data:`WARN_MARGIN_MS`), so a relay capped at the limit is not
itself reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from meshsync.model.limits import MAX_CLOCK_DRIFT_MS

#: A received timestamp is reported as "ahead" only past the drift limit plus this
#: margin (ms): an honest relay whose clock sits at the cap (it saw a far-future
#: change) must not be reported by peers whose clocks are a little behind its own.
WARN_MARGIN_MS = 60_000

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
# Stores keep timestamps in signed 64-bit integers (SQLite INTEGER, PostgreSQL bigint),
# so the greatest timestamp is 2**63 - 1 (wall clock up to the year 6429).
MAX_HLC = (1 << 63) - 1


def make(wall_ms: int, counter: int = 0) -> int:
    """Pack wall-clock milliseconds and a logical counter into one timestamp."""
    return (wall_ms << COUNTER_BITS) | (counter & COUNTER_MASK)


def wall_ms(ts: int) -> int:
    """Wall-clock milliseconds part of a timestamp."""
    return ts >> COUNTER_BITS


@dataclass
class HybridClock:
    """A device's HLC. ``last`` is the greatest timestamp issued or accepted."""

    last: int = 0
    max_drift_ms: int = MAX_CLOCK_DRIFT_MS

    def reserve(self, now_ms: int, count: int = 1) -> int:
        """Reserve ``count`` consecutive timestamps at wall time ``now_ms``; return the first."""
        first = max(make(now_ms), self.last + 1)
        self.last = first + count - 1
        return first

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """Undo what the block did to :attr:`last` if it raises (re-raised): a clock
        must not keep timestamps of a change or batch that was rolled back."""
        saved = self.last
        try:
            yield
        except BaseException:
            self.last = saved
            raise

    def observe(self, ts: int, now_ms: int) -> int:
        """Take a received timestamp into account; return how far (ms) it runs ahead of
        ``now_ms`` beyond the drift limit (0 when within it)."""
        ceiling = make(now_ms + self.max_drift_ms, COUNTER_MASK)
        self.last = max(self.last, min(ts, ceiling))
        ahead = wall_ms(ts) - now_ms
        return ahead if ahead > self.max_drift_ms + WARN_MARGIN_MS else 0
