"""The share policy (docs/architecture.md §5): which feeds a node carries and offers.

Phones, the gateway and central run the same node and differ only here: a pantarlih
phone carries its whole district (so any phone can carry others' changes to the
gateway), the gateway its district, central everything (its scope is empty).
Partitions are matched by whole path segments: ``mimika/jila/diloa/tps-1`` is not under
``mimika/jila/diloa/tps-10``, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshsync.model.change import FeedId
from meshsync.model.errors import UsageError
from meshsync.store.base import in_prefix

#: A pantarlih phone carries its whole district's feeds, so its share scope is its
#: certificate scope cut to this many path segments (``mimika/jila``).
PHONE_SHARE_DEPTH = 2


def default_share(role: str, scope: str) -> str:
    """The partition prefix a node with certificate ``role`` and ``scope`` carries by
    default: a phone (role ``pantarlih``) its district (the first
    :data:`PHONE_SHARE_DEPTH` segments of its scope), any other role its scope ("" is
    every partition)."""
    if role == "pantarlih":
        return "/".join(scope.split("/")[:PHONE_SHARE_DEPTH]) if scope else scope
    return scope


def check_share(share: str, scope: str, *, source: str = "share") -> str:
    """Return ``share`` if it contains ``scope`` (the device's own partition: its
    certificate scope), else raise :class:`UsageError` naming ``source``.

    A share that leaves out the device's own partition would keep the device's edits on
    the device: no session would ever offer them.
    """
    if not in_prefix(scope, share):
        raise UsageError(f"{source} = {share!r} does not contain this device's own "
                         f"partition {scope!r}, so its edits would never leave it; "
                         f"use a prefix of {scope!r} (or remove {source!r})")
    return share


def pending_changes(mine: Mapping[FeedId, int], theirs: Mapping[FeedId, int]) -> int:
    """How many changes this node holds that a peer still lacks.

    ``mine`` and ``theirs`` are version vectors (feed ``(author, partition)`` -> highest
    contiguous seq). A feed of mine counts if the peer holds that feed, or holds any
    feed in a partition containing the feed's partition, by whole path segments (a
    peer holding ``.../tps-1`` does not want ``.../tps-10``).
    """
    held = _partitions(theirs)
    return sum(max(0, seq - theirs.get(feed, 0)) for feed, seq in mine.items()
               if feed in theirs or any(in_prefix(feed[1], p) for p in held))


def _partitions(vv: Iterable[FeedId]) -> set[str]:
    return {partition for _, partition in vv}
