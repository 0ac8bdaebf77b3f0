"""How much a session has to move, once both version vectors are known: the figures a
progress bar is drawn against (``meshsync sync``, ``progress`` in ``/api/status``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from meshsync.model.change import FeedId


def offer_counts(held: Mapping[FeedId, int], peer: Mapping[FeedId, int],
                 in_scope: Callable[[FeedId], bool]) -> tuple[int, int]:
    """``(to receive, to send)``: changes of the feeds ``in_scope`` that ``peer`` holds
    beyond ``held``, and that ``held`` holds beyond ``peer`` (feed -> head seq both).

    An estimate for progress only: a fork's head is sent again, and the share policy
    may hold back some of what this node holds."""
    offered = sum(max(0, seq - held.get(feed, 0)) for feed, seq in peer.items()
                  if in_scope(feed))
    to_send = sum(max(0, seq - peer.get(feed, 0)) for feed, seq in held.items()
                  if in_scope(feed))
    return offered, to_send
