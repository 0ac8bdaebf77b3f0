"""When the peer manager may dial: rate limits and backoff for adverts (issue 14).

An advert (a beacon or an mDNS record) is a hint: anyone on the Wi-Fi can send one naming
any device id and port, without credentials (docs/architecture.md §7). Dialling a hint
costs both ends a TLS handshake and a session, so this module bounds what hints cost:

* **in total**: a token bucket for every dial (``rate_per_s``, ``burst``) and a smaller
  one for dials to hints, so a flood of adverts cannot crowd out known peers;
* **per address**: two dials to one ``(host, port)`` are at least ``min_gap_ms`` apart;
* **backoff that follows the address and the advertised id**: a hint that failed, or
  whose TLS-verified device was another than it claimed, puts both its address and its
  claimed id in exponential backoff (``backoff_min_ms`` doubling to ``backoff_max_ms``,
  ± 25 % jitter), so a spoofer gains nothing by changing either one.

Sans-I/O: every method takes ``now`` in milliseconds. The tables are bounded
(``max_keys``): the entries idle longest are forgotten first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

Address = tuple[str, int]


@dataclass
class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` held."""

    rate: float
    burst: float
    tokens: float
    at_ms: int = 0

    def refill(self, now: int) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at_ms) * self.rate / 1000)
        self.at_ms = now


@dataclass
class _Backoff:
    failures: int = 0
    until_ms: int = 0
    touched_ms: int = 0


class DialPolicy:
    """Rate limits and hint backoff for one peer manager (module docstring).

    Args:
        backoff_min_ms, backoff_max_ms: first and longest hint backoff, milliseconds.
        rate_per_s, burst: every dial, a second and at once.
        hint_rate_per_s, hint_burst: dials to hints (addresses or ids no session has
            verified), a second and at once; they also count against the total.
        min_gap_ms: least time between two dials to one address.
        max_keys: most addresses and ids remembered (bounded memory under a flood).
        rng: randomness for the jitter (seed it in tests).
    """

    def __init__(self, *, backoff_min_ms: int, backoff_max_ms: int,
                 rate_per_s: float = 4.0, burst: int = 32, hint_rate_per_s: float = 0.5,
                 hint_burst: int = 4, min_gap_ms: int = 1000, max_keys: int = 4096,
                 rng: random.Random | None = None) -> None:
        self.backoff_min_ms, self.backoff_max_ms = backoff_min_ms, backoff_max_ms
        self.min_gap_ms, self.max_keys = min_gap_ms, max_keys
        self._all = _Bucket(rate_per_s, burst, burst)
        self._hints = _Bucket(hint_rate_per_s, hint_burst, hint_burst)
        self._last_dial: dict[Address, int] = {}
        self._backoff: dict[object, _Backoff] = {}
        self._rng = rng or random.Random()
        self.counts = dict.fromkeys(("dials", "hint_dials", "hint_failures",
                                     "wrong_device"), 0)

    def may_dial(self, address: Address, claimed: str | None, *, hint: bool,
                 now: int) -> bool:
        """Whether ``address`` (claimed by device ``claimed``, if any) may be dialled now.

        ``hint`` is true when no session has verified this device at this address;
        hints are also held back by the backoff of their address and claimed id.
        Does not consume anything: call :meth:`dialled` when the dial starts.
        """
        if now < self._last_dial.get(address, -self.min_gap_ms) + self.min_gap_ms:
            return False
        if hint and now < self.hint_ready_ms(address, claimed):
            return False
        self._all.refill(now)
        self._hints.refill(now)
        return self._all.tokens >= 1 and (not hint or self._hints.tokens >= 1)

    def hints_allowed(self, now: int) -> bool:
        """Whether the budget for dials to hints has a dial left now (a cheap check
        before looking at each hint)."""
        self._hints.refill(now)
        return self._hints.tokens >= 1

    def forgive(self, address: Address) -> None:
        """Forget ``address``'s backoff and gap: the network changed, dial it afresh."""
        self._backoff.pop(address, None)
        self._last_dial.pop(address, None)

    def hint_ready_ms(self, address: Address, claimed: str | None) -> int:
        """When the backoff of ``address`` and of ``claimed`` both end (epoch ms)."""
        keys: list[object] = [address] if claimed is None else [address, claimed]
        return max((self._backoff[k].until_ms for k in keys if k in self._backoff),
                   default=0)

    def next_ready_ms(self, now: int) -> int:
        """The earliest time a refused dial could pass the buckets (epoch ms)."""
        need = max(0.0, 1 - min(self._all.tokens, self._hints.tokens))
        rate = min(self._all.rate, self._hints.rate)
        return now + int(need * 1000 / rate) if rate > 0 else now + self.backoff_max_ms

    def dialled(self, address: Address, *, hint: bool, now: int) -> None:
        """A dial to ``address`` starts now: spend its tokens and start its gap."""
        self._all.refill(now)
        self._all.tokens -= 1
        self.counts["dials"] += 1
        if hint:
            self._hints.refill(now)
            self._hints.tokens -= 1
            self.counts["hint_dials"] += 1
        self._last_dial[address] = now
        if len(self._last_dial) > self.max_keys:
            self._last_dial = {a: t for a, t in self._last_dial.items()
                               if now - t < self.min_gap_ms}

    def hint_failed(self, address: Address, claimed: str | None, now: int, *,
                    wrong_device: bool = False) -> int:
        """A hint's dial failed, or reached another device than ``claimed``
        (``wrong_device``): back off its address and claimed id. Returns the delay (ms).
        """
        self.counts["wrong_device" if wrong_device else "hint_failures"] += 1
        delay = 0
        for key in (address,) if claimed is None else (address, claimed):
            delay = max(delay, self._back_off(key, now))
        return delay

    def verified(self, address: Address, device: str) -> None:
        """A session at ``address`` verified ``device``: forget the device's backoff."""
        self._backoff.pop(device, None)

    def _back_off(self, key: object, now: int) -> int:
        entry = self._backoff.setdefault(key, _Backoff())
        entry.failures += 1
        delay = min(self.backoff_max_ms,
                    self.backoff_min_ms * 2 ** min(entry.failures - 1, 20))
        delay = int(delay * self._rng.uniform(0.75, 1.25))
        entry.until_ms, entry.touched_ms = now + delay, now
        if len(self._backoff) > self.max_keys:
            self._forget_oldest()
        return delay

    def _forget_oldest(self) -> None:
        keep = sorted(self._backoff.items(), key=lambda kv: kv[1].touched_ms)
        self._backoff = dict(keep[len(keep) - self.max_keys // 2:])

    def statistics(self) -> dict[str, int]:
        """Counters: dials, dials to hints, hints that failed, sessions that verified
        another device than the advert claimed, and remembered backoff entries."""
        return {**self.counts, "backoff_entries": len(self._backoff)}
