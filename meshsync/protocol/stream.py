"""The streaming phase of a session: changes packed into CHANGES frames, and read back.

Changes are taken in feed order and encoded with one :class:`SessionEncoder` per
session; a frame holds whole changes up to ``frame_target`` bytes (a change larger
than that goes alone in its frame, which the frame limit always admits).

The items are those of :mod:`meshsync.protocol.wire` with two savings over a bundle:

* ``[3, index, prev8]`` starts a feed section in a feed the receiver listed in its
  VV message (entry ``index``, at seq ``s``): the section starts at ``s + 1``, and
  ``prev8`` is the first 8 bytes of that change's ``prev``. The receiver checks them
  against the hash of the change it holds at ``s`` and, if they match, rebuilds the
  body with that full hash. If they do not, the two hold different changes at ``s``
  (a fork): the receiver skips the section's change items and names ``index`` in
  its ACK (``[ACK, n, [index, ...]]``); the sender sends the feed again from
  ``s + 1`` with a full feed item ``[1, actor, partition, seq, prev]``, so the
  receiver verifies the change and keeps the fork's evidence as from any other
  stream. A sender only sends SENT_ALL once no such request can still come (every
  frame with a short feed item acknowledged).
* A section's first ``dhlc`` is relative to the last hlc of the section before it
  (``carry_hlc``), not absolute.
* A change of at most 8 ops (an officer's edits) is sent as ``[4, dhlc, ops, sig]``:
  like a change item, but each op's collection is a *name*, and so is each field
  name of a put of at most 4 fields (an edit), whose fields are then a flat array
  ``[name, value, name, value, ...]`` in their canonical order. A name is text the
  first time (both ends then append it to the session's name table, up to 4,096
  names) and its index in that table afterwards. The receiver turns them back into
  the op arrays and rebuilds the canonical body from those, as for any change.
  Larger changes and whole records (a baseline import) keep the plain form, which
  the receiver decodes fastest.

An 8-byte prefix cannot be matched by accident (2**-64), nor on purpose: a device
forking its own feed would need about 2**64 tries to make a second change whose hash
starts like the first one's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import msgpack

from meshsync.model.change import HASH_BYTES, PUT, Change, FeedId
from meshsync.model.errors import DecodeError
from meshsync.protocol import frames as fr
from meshsync.protocol.meta import Holdings
from meshsync.protocol.wire import CHANGE, FEED, WireDecoder, WireEncoder

FEED_REF, COMPACT = 3, 4
PREV_CHECK = 8
SMALL_CHANGE = 8  # ops: a change this small goes as a compact change item
SMALL_PUT = 4  # fields: a put this small in it has its field names from the table
MAX_NAMES = 4096


class SessionEncoder(WireEncoder):
    """Wire items for a session; ``refs`` maps a feed the receiver holds to
    ``(index in its VV list, seq it holds)``."""

    carry_hlc = True

    def __init__(self, refs: dict[FeedId, tuple[int, int]]) -> None:
        super().__init__()
        self._refs = refs
        self._names: dict[str, int] = {}
        self.referenced: set[int] = set()
        self.used_ref = False

    def encode(self, change: Change) -> list[list[Any]]:
        """Items for ``change``; the change item compact if it is small."""
        items = super().encode(change)
        if len(change.ops) <= SMALL_CHANGE:
            _, dhlc, ops, sig = items[-1]
            items[-1] = [COMPACT, dhlc, [self._compact_op(op) for op in ops], sig]
        return items

    def _compact_op(self, op: list[Any]) -> list[Any]:
        op[1] = self._name(op[1])
        if op[0] == PUT and len(op[3]) <= SMALL_PUT:
            op[3] = [x for name, value in op[3].items() for x in (self._name(name), value)]
        return op

    def _name(self, name: str) -> int | str:
        index = self._names.get(name)
        if index is not None:
            return index
        if len(self._names) < MAX_NAMES:
            self._names[name] = len(self._names)
        return name

    def forget(self, feed: FeedId) -> None:
        """Send ``feed`` with full feed items from now on (a new section follows)."""
        self._refs.pop(feed, None)
        if self._section is not None:
            self._section.next_seq = -1

    def _feed_item(self, change: Change, out: list[list[Any]]) -> list[Any]:
        ref = self._refs.get(change.feed)
        if ref is not None and change.seq == ref[1] + 1 and len(change.prev) == HASH_BYTES:
            self.used_ref = True
            self.referenced.add(ref[0])
            return [FEED_REF, ref[0], change.prev[:PREV_CHECK]]
        return super()._feed_item(change, out)


class SessionDecoder(WireDecoder):
    """Reads a session's items; ``held`` is what this side's VV message sent. Short
    feed items whose ``prev8`` does not match are collected in :attr:`resend`."""

    carry_hlc = True

    def __init__(self, held: Holdings) -> None:
        super().__init__()
        self._own, self._heads = held.vv, held.heads
        self._skipping = False
        self._names: list[str] = []
        self._asked: set[int] = set()
        self.resend: list[int] = []

    def decode(self, item: Any) -> Change | None:
        """Consume one item (see the module docs and :mod:`meshsync.protocol.wire`)."""
        if type(item) is list and item:
            tag = item[0]
            if tag == CHANGE and len(item) == 4:  # the common case first
                if not self._skipping:
                    return self._change(item)
                self._skip(item[1])
                return None
            if tag == COMPACT and len(item) == 4:
                ops = self._expand(item[2])  # names go in the table even if skipped
                if not self._skipping:
                    return self._change([CHANGE, item[1], ops, item[3]])
                self._skip(item[1])
                return None
            if tag == FEED_REF and len(item) == 3:
                self._ref(item[1], item[2])
                return None
            if tag == FEED and len(item) == 5:
                self._skipping = False
        return super().decode(item)

    def _ref(self, index: Any, prev8: Any) -> None:
        if type(index) is not int or not 0 <= index < len(self._own) \
                or not isinstance(prev8, bytes) or len(prev8) != PREV_CHECK:
            raise DecodeError("malformed short feed item")
        (feed, seq), head = self._own[index], self._heads[index]
        self._open_section(feed, seq + 1, head)
        self._skipping = head[:PREV_CHECK] != prev8
        if self._skipping:
            if index in self._asked:
                raise DecodeError("feed sent again with a short feed item after a "
                                  "request for its full form")
            self._asked.add(index)
            self.resend.append(index)

    def _expand(self, ops: Any) -> list[Any]:
        """The op arrays of a compact change item (see the module docs)."""
        if type(ops) is not list:
            raise DecodeError("ops must be an array")
        for raw in ops:
            if type(raw) is not list or len(raw) < 4:
                raise DecodeError("op must be an array")
            raw[1] = self._name(raw[1])
            if raw[0] == PUT and type(raw[0]) is int and len(raw) == 5 \
                    and type(raw[3]) is not dict:
                flat = raw[3]
                if type(flat) is not list or len(flat) % 2 or len(flat) > 2 * SMALL_PUT:
                    raise DecodeError("compact put fields must be [name, value, ...]")
                fields = {self._name(flat[k]): flat[k + 1] for k in range(0, len(flat), 2)}
                if 2 * len(fields) != len(flat):
                    raise DecodeError("compact put names a field twice")
                raw[3] = fields
        return ops

    def _name(self, ref: Any) -> str:
        if type(ref) is int:
            if not 0 <= ref < len(self._names):
                raise DecodeError(f"unknown name index {ref!r}")
            return self._names[ref]
        if type(ref) is not str:
            raise DecodeError("a name must be text or an index")
        if len(self._names) < MAX_NAMES:
            self._names.append(ref)
        return ref

    def _skip(self, dhlc: Any) -> None:
        """A change of a section that follows a different change than ours: only its
        hlc is kept (the next section's starts from it)."""
        assert self._section is not None
        if type(dhlc) is not int:
            raise DecodeError("malformed change item")
        self._section.last_hlc += dhlc

    def take_resend(self) -> list[int]:
        """Indexes to ask for in full since the last call."""
        out, self.resend = self.resend, []
        return out


class OutgoingChanges:
    """Packs ``changes`` (what the node holds beyond the peer's version vector, an
    iterator its owner gives) into CHANGES frames of about ``frame_target`` bytes;
    ``refs`` as for :class:`SessionEncoder`."""

    def __init__(self, changes: Iterator[Change], frame_target: int,
                 refs: dict[FeedId, tuple[int, int]]) -> None:
        self._target = frame_target
        self._changes = changes
        self._by_index = {index: feed for feed, (index, _) in refs.items()}
        self._encoder = SessionEncoder(dict(refs))
        self._carry: tuple[list[bytes], bool] | None = None
        self._resends: deque[tuple[FeedId, Iterator[Change]]] = deque()
        self._resent: set[int] = set()

    def resend(self, index: Any) -> FeedId:
        """The peer asks for the feed of its VV entry ``index`` again, in full: returns
        that feed (its changes follow by :meth:`send_again`); :class:`DecodeError`
        unless that feed was sent with a short feed item, and only once."""
        feed = self._by_index.get(index) if type(index) is int else None
        if feed is None or index not in self._encoder.referenced or index in self._resent:
            raise DecodeError(f"unexpected request to send feed {index!r} again")
        self._resent.add(index)
        return feed

    def send_again(self, feed: FeedId, changes: Iterator[Change]) -> None:
        """Send ``changes`` of ``feed`` (from the seq the peer holds) with full feed
        items, once what is queued before them is sent."""
        self._resends.append((feed, changes))

    def next_batch(self) -> tuple[list[bytes], int, bool]:
        """``(packed items, number of changes, whether a short feed item is among
        them)`` of the next frame; no items when there is nothing (yet) to send."""
        items: list[bytes] = []
        size = count = 0
        short = False
        while size < self._target:
            got = self._carry or self._encode_next()
            self._carry = None
            if got is None:
                break
            packed, ref = got
            extra = sum(len(p) for p in packed)
            if items and size + extra > self._target:
                self._carry = got
                break
            items += packed
            size += extra
            count += 1
            short = short or ref
        return items, count, short

    def _encode_next(self) -> tuple[list[bytes], bool] | None:
        change = next(self._changes, None)
        while change is None and self._resends:
            feed, self._changes = self._resends.popleft()
            self._encoder.forget(feed)
            change = next(self._changes, None)
        if change is None:
            return None
        self._encoder.used_ref = False
        items = self._encoder.encode(change)
        return [msgpack.packb(i, use_bin_type=True) for i in items], self._encoder.used_ref


def changes_frame(batch: int, items: list[bytes]) -> bytes:
    """A length-prefixed CHANGES frame ``[CHANGES, batch, [items...]]`` from packed items."""
    packer = msgpack.Packer(use_bin_type=True)
    payload = b"".join([packer.pack_array_header(3), packer.pack(fr.CHANGES),
                        packer.pack(batch), packer.pack_array_header(len(items)), *items])
    return len(payload).to_bytes(4, "big") + payload
