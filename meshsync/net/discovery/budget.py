"""A token bucket bounding how many received adverts a discovery method handles.

Anyone on the Wi-Fi can send beacons or mDNS records as fast as the link carries them
(issue 14). Past ``per_second`` (with a burst of as many), a method counts the advert
and drops it before decoding it, so a flood costs a small, bounded share of a core.
Peers already in the peer table keep being dialled meanwhile, and honest adverts
repeat (every beacon interval; RFC 6762 §8.3 and §5.2 for mDNS announcements and
queries), so one lost to the budget is heard again later.
"""

from __future__ import annotations


class AdvertBudget:
    """Allow at most ``per_second`` adverts a second, ``per_second`` at once.

    Args:
        per_second: adverts handled a second; must be positive.

    Raises:
        ValueError: ``per_second`` is not positive.
    """

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError(f"advert budget must be positive (got {per_second!r})")
        self.per_second = per_second
        self._tokens = per_second
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Spend one advert at time ``now`` (seconds, any monotonic clock); False
        when the budget is spent (drop the advert)."""
        if self._at is not None:
            self._tokens = min(self.per_second,
                               self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
