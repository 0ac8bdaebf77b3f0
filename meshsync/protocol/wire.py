"""Compact wire form of change streams, shared by bundles and sync sessions.

A stream is a sequence of msgpack items; the receiver rebuilds each change's
canonical body (:mod:`meshsync.model.change`) and verifies the signature over that. What
the receiver can recompute is not sent per change:

* ``[0, author]`` defines the next actor index (authors are sent once per stream);
* ``[1, actor, partition, seq, prev]`` starts a feed section: the next change has
  this ``seq`` and ``prev``; later changes in the section have ``seq + 1`` and the
  hash of the change before them;
* ``[2, dhlc, ops, sig]`` is one change: ``dhlc`` is its hlc minus the previous
  change's hlc in the section (the first is absolute), and every pred entry is
  ``[hlc - pred_hlc, actor]`` (signed difference, so it stays short).

Item tags 3 and up belong to the container (bundle or session): :class:`WireDecoder`
refuses them, a container's decoder handles its own first. The sync session
(:mod:`meshsync.protocol.stream`) subclasses both classes: it adds a short feed item
naming a feed the receiver listed in its version vector, and starts each section's
``dhlc`` from the previous section's last hlc instead of 0 (``carry_hlc``). Bundles
use the classes as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshsync.model.change import Change, Delete, FeedId, OpId, Put, decode_ops, make_change
from meshsync.model.errors import DecodeError
from meshsync.model.hlc import MAX_HLC
from meshsync.model.identity import PUBLIC_KEY_BYTES

ACTOR, FEED, CHANGE = 0, 1, 2


@dataclass
class _Section:
    feed: FeedId
    next_seq: int
    prev: bytes
    last_hlc: int


class WireEncoder:
    """Turns changes into wire items. Keep one encoder per stream."""

    def __init__(self) -> None:
        self._actors: dict[bytes, int] = {}
        self._section: _Section | None = None

    def _actor(self, author: bytes, out: list[list[Any]]) -> int:
        index = self._actors.get(author)
        if index is None:
            index = self._actors[author] = len(self._actors)
            out.append([ACTOR, author])
        return index

    #: Start each section's hlc from the previous section's last one (else 0).
    carry_hlc = False

    def encode(self, change: Change) -> list[list[Any]]:
        """Items (zero or more actor/feed items, then one change item) for ``change``."""
        out: list[list[Any]] = []
        sec = self._section
        if sec is None or sec.feed != change.feed or sec.next_seq != change.seq \
                or sec.prev != change.prev:
            out.append(self._feed_item(change, out))
            start = sec.last_hlc if sec is not None and self.carry_hlc else 0
            sec = self._section = _Section(change.feed, change.seq, change.prev, start)
        ops = [self._op(op, change.hlc, out) for op in change.ops]
        out.append([CHANGE, change.hlc - sec.last_hlc, ops, change.sig])
        sec.next_seq, sec.prev, sec.last_hlc = change.seq + 1, change.hash, change.hlc
        return out

    def _feed_item(self, change: Change, out: list[list[Any]]) -> list[Any]:
        """The item starting a section at ``change`` (its actor item goes to ``out``)."""
        return [FEED, self._actor(change.author, out), change.partition, change.seq,
                change.prev]

    def _op(self, op: Put | Delete, hlc: int, out: list[list[Any]]) -> list[Any]:
        pred = [[hlc - h, self._actor(a, out)] for h, a in op.pred]
        if isinstance(op, Put):
            return [0, op.collection, op.key, op.fields, pred]
        return [1, op.collection, op.key, pred]


class WireDecoder:
    """Rebuilds changes from wire items. Keep one decoder per stream.

    :meth:`decode` returns a :class:`Change` for a change item, ``None`` for the
    stream's own bookkeeping items, and raises :class:`DecodeError` for anything
    malformed. It does not verify signatures.
    """

    #: Start each section's hlc from the previous section's last one (else 0).
    carry_hlc = False

    def __init__(self) -> None:
        self._actors: list[bytes] = []
        self._section: _Section | None = None

    def decode(self, item: Any) -> Change | None:
        """Consume one item (see module docs)."""
        if type(item) is not list or not item:
            raise DecodeError("stream item must be a non-empty array")
        tag = item[0]
        if tag == ACTOR and len(item) == 2:
            self._define_actor(item[1])
            return None
        if tag == FEED and len(item) == 5:
            self._start_section(item)
            return None
        if tag == CHANGE and len(item) == 4:
            return self._change(item)
        raise DecodeError(f"unexpected stream item with tag {tag!r}")

    def _define_actor(self, author: Any) -> None:
        if not isinstance(author, bytes) or len(author) != PUBLIC_KEY_BYTES:
            raise DecodeError("actor must be a 32-byte public key")
        self._actors.append(author)

    def _author(self, index: Any) -> bytes:
        if type(index) is not int or not 0 <= index < len(self._actors):
            raise DecodeError(f"unknown actor index {index!r}")
        return self._actors[index]

    def _start_section(self, item: list[Any]) -> None:
        author = self._author(item[1])
        _, _, partition, seq, prev = item
        if type(seq) is not int or not isinstance(prev, bytes) or type(partition) is not str:
            raise DecodeError("malformed feed item")
        self._open_section((author, partition), seq, prev)

    def _open_section(self, feed: FeedId, seq: int, prev: bytes) -> None:
        last = self._section
        start = last.last_hlc if last is not None and self.carry_hlc else 0
        self._section = _Section(feed, seq, prev, start)

    def _change(self, item: list[Any]) -> Change:
        sec = self._section
        if sec is None:
            raise DecodeError("change before any feed item")
        _, dhlc, ops_raw, sig = item
        if type(dhlc) is not int or type(ops_raw) is not list:
            raise DecodeError("malformed change item")
        hlc = sec.last_hlc + dhlc

        def resolve(raw: Any) -> tuple[OpId, ...]:
            if raw == [] and type(raw) is list:
                return ()  # the common case: a new record
            if type(raw) is not list:
                raise DecodeError("pred must be an array")
            out = []
            for entry in raw:
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int:
                    raise DecodeError("pred entries must be [dhlc, actor]")
                if not 0 <= hlc - entry[0] <= MAX_HLC:
                    raise DecodeError(f"pred hlc out of range: {hlc - entry[0]}")
                out.append((hlc - entry[0], self._author(entry[1])))
            return tuple(sorted(set(out)))

        ops, arrays = decode_ops(ops_raw, resolve)
        author, partition = sec.feed
        change = make_change(author, partition, sec.next_seq, sec.prev, hlc, ops, sig, arrays)
        sec.next_seq, sec.prev, sec.last_hlc = change.seq + 1, change.hash, hlc
        return change
