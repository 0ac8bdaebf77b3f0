"""The node's clock on a real device: the system clock, unless it is clearly wrong.

:class:`TrustedClock` is what :func:`meshsync.host.local.open_node` gives a node: it
reads the system clock and judges it against the proven time its trust store holds
(:mod:`meshsync.trust.proven`, docs/architecture.md §6). When the phone's date is
implausible (1970 after a battery swap, years ahead), it answers the proven time
instead, so edits, receipts and certificate checks go on, and :func:`clock_check`
lets every surface tell the officer (``meshsync status``, ``/api/status``, the status
page, refused actions).
"""

from __future__ import annotations

import time

from meshsync.model.errors import UsageError
from meshsync.replica.node import Node
from meshsync.replica.policy import Authorizer
from meshsync.store.base import Store
from meshsync.trust.proven import (
    META_KEY,
    ClockCheck,
    decode_meta,
    encode_meta,
    judge,
    with_clock_note,
)


def system_clock() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def proven_ms(trust: Authorizer) -> int | None:
    """The proven time of ``trust`` (ms), or None if it is no trust store (not enrolled)."""
    value = getattr(trust, "proven_ms", None)
    return value if isinstance(value, int) else None


def check_clock(trust: Authorizer) -> ClockCheck | None:
    """The system clock judged against ``trust``'s proven time; None if not enrolled."""
    proven = proven_ms(trust)
    return None if proven is None else judge(system_clock(), proven)


def clock_check(node: Node) -> ClockCheck | None:
    """:func:`check_clock` of ``node``'s trust store."""
    return check_clock(node.trust)


class TrustedClock:
    """A node clock (ms since the epoch): the system clock, or the proven time of
    ``trust`` while the system clock is implausible (see :mod:`meshsync.trust.proven`).
    It reads ``trust.proven_ms`` on every call, so what a sync teaches counts at once."""

    def __init__(self, trust: Authorizer) -> None:
        self.trust = trust

    def __call__(self) -> int:
        check = check_clock(self.trust)
        return system_clock() if check is None else check.effective_ms


def load_proven_time(trust: Authorizer, store: Store) -> None:
    """Give ``trust`` the proven time kept in ``store``'s meta (if it learns times)."""
    note = getattr(trust, "note_time", None)
    if note is not None:
        note(decode_meta(store.get_meta(META_KEY)))


def keep_proven_time(node: Node) -> None:
    """Write the trust store's proven time to the store's meta if it is newer there
    (its own transaction); nothing for a node that is not enrolled."""
    proven = proven_ms(node.trust)
    if proven is None or proven <= decode_meta(node.store.get_meta(META_KEY)):
        return
    with node.store.transaction():
        node.store.set_meta(META_KEY, encode_meta(proven))


def explain_refusal(exc: UsageError, node: Node) -> UsageError:
    """``exc`` with the wrong-date sentence appended when ``node``'s clock is implausible
    (so a refused action, e.g. "this device may not write here: ... expired", tells the
    officer to fix the date); ``exc`` itself otherwise or for a UsageError subclass."""
    return explain_with_trust(exc, node.trust)


def explain_with_trust(exc: UsageError, trust: Authorizer) -> UsageError:
    """:func:`explain_refusal` for the system clock judged against ``trust``'s proven
    time (a store opened without a node: :mod:`meshsync.host.reading`)."""
    check = check_clock(trust)
    if type(exc) is not UsageError or check is None or check.plausible:
        return exc
    return UsageError(with_clock_note(str(exc), check))


def clock_json(node: Node) -> dict[str, object] | None:
    """:meth:`~meshsync.trust.proven.ClockCheck.to_json` of ``node``'s clock now (the
    ``clock`` member of every status document); None if the node is not enrolled."""
    check = clock_check(node)
    return None if check is None else check.to_json()
