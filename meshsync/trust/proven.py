"""Proven time: what a node can show about the current time, and when its clock is wrong.

A phone's date is often wrong (1970 after a battery swap, a year off by hand). A node
holds signatures whose signers put a time in them: certificates' ``notBefore`` (set by
the authority when it signs, RFC 5280 §4.1.2.5), revocations' time, and the custody
receipts of gateway and central devices. The newest such time it holds, from a
signer it trusts, is a **proven lower bound** of the current time ("the network's
date"); :class:`meshsync.trust.TrustStore` keeps it (``proven_ms``) and the host keeps
it in the store's meta (:data:`META_KEY`) so it survives a restart.

**The rule** (:func:`judge`, docs/architecture.md §6). The device's clock is
*implausible* when it reads

* more than :data:`BEHIND_TOLERANCE_MS` (the drift limit, 10 minutes) before the
  proven time, which is at least the start of its own certificate (its notBefore is
  such a signed time); or
* more than :data:`AHEAD_LIMIT_MS` (400 days) after it: later than the end of any
  device certificate issued by then (365 days by default), so no enrolled phone can
  honestly be there without having synced since.

Then the node keeps working on the proven time instead: local edits are stamped with
it (the HLC never goes backwards), and certificate validity, in TLS and in change
checks, is judged at it. A certificate that expired before the proven time still
fails. Every surface tells the officer in words (:func:`clock_message`).

Nothing here reads the clock: times are arguments, milliseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshsync.model.limits import MAX_CLOCK_DRIFT_MS

#: A clock more than this (ms) behind the proven time is wrong (the drift limit).
BEHIND_TOLERANCE_MS = MAX_CLOCK_DRIFT_MS
#: A clock more than this (ms) ahead of the proven time is wrong: 400 days.
AHEAD_LIMIT_MS = 400 * 24 * 3600 * 1000
#: Store meta key of the proven time (8 bytes, big-endian ms since the epoch).
META_KEY = "proven_ms"

#: Messages for the officer: whole sentences with named placeholders, so another
#: language's catalogue can replace them (``device_date``, ``network_date``).
MESSAGES = {
    "clock_behind": (
        "This phone's date is {device_date}, but the network's date is at least "
        "{network_date}. Fix the date in the phone's settings. Until then meshsync "
        "keeps working with the network's date."
    ),
    "clock_ahead": (
        "This phone's date is {device_date}, far past the network's date "
        "({network_date} or a little later). Fix the date in the phone's settings. "
        "Until then meshsync keeps working with the network's date."
    ),
}


def show_date(ms: int) -> str:
    """``2026-12-07 22:31 UTC`` for milliseconds since the epoch (clamped to years 1-9999)."""
    seconds = min(max(ms // 1000, -62135596800), 253402300799)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class ClockCheck:
    """One reading of the device clock judged against the proven time (both in ms).

    ``proven_ms`` 0 means nothing is proven (not enrolled): the clock is believed.
    """

    clock_ms: int
    proven_ms: int

    @property
    def problem(self) -> str | None:
        """``"clock_behind"``, ``"clock_ahead"`` (keys of :data:`MESSAGES`) or None."""
        if self.proven_ms <= 0:
            return None
        if self.clock_ms < self.proven_ms - BEHIND_TOLERANCE_MS:
            return "clock_behind"
        if self.clock_ms > self.proven_ms + AHEAD_LIMIT_MS:
            return "clock_ahead"
        return None

    @property
    def plausible(self) -> bool:
        """True if the clock may be believed (see the module's rule)."""
        return self.problem is None

    @property
    def effective_ms(self) -> int:
        """The time to work with: the clock if plausible, else the proven time."""
        return self.clock_ms if self.plausible else self.proven_ms

    def message(self) -> str | None:
        """The officer's sentence about a wrong date (English), or None if it is right."""
        problem = self.problem
        if problem is None:
            return None
        return MESSAGES[problem].format(device_date=show_date(self.clock_ms),
                                        network_date=show_date(self.proven_ms))

    def to_json(self) -> dict[str, Any]:
        """``{"plausible", "device_date", "network_date", "problem", "message"}``; dates
        are ISO 8601 UTC text (``network_date`` None when nothing is proven)."""
        return {
            "plausible": self.plausible,
            "device_date": _iso(self.clock_ms),
            "network_date": _iso(self.proven_ms) if self.proven_ms > 0 else None,
            "problem": self.problem,
            "message": self.message(),
        }


def _iso(ms: int) -> str:
    return show_date(ms).replace(" UTC", "Z").replace(" ", "T")


def judge(clock_ms: int, proven_ms: int) -> ClockCheck:
    """Judge a clock reading ``clock_ms`` against ``proven_ms`` (both ms since the epoch;
    ``proven_ms`` <= 0: nothing proven). Never raises."""
    return ClockCheck(clock_ms, max(proven_ms, 0))


def clock_message(check: ClockCheck | None) -> str | None:
    """:meth:`ClockCheck.message` of ``check``, None for None (no trust store)."""
    return None if check is None else check.message()


def with_clock_note(reason: str, check: ClockCheck | None) -> str:
    """``reason`` followed by the wrong-date sentence when ``check`` finds the clock
    implausible (for the error of a refused action); ``reason`` alone otherwise."""
    note = clock_message(check)
    return reason if note is None else f"{reason}. {note}"


def decode_meta(raw: bytes | None) -> int:
    """The proven time kept in the store's meta (0 if none or malformed)."""
    return int.from_bytes(raw, "big") if raw and len(raw) == 8 else 0


def encode_meta(proven_ms: int) -> bytes:
    """8-byte big-endian encoding of ``proven_ms`` for the store's meta."""
    return max(proven_ms, 0).to_bytes(8, "big")
