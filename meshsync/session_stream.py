"""The sending half of a session's streaming phase: changes packed into frames.

Changes are taken in feed order and encoded with one :class:`~meshsync.wire.WireEncoder`
per session; a frame holds whole changes up to ``frame_target`` bytes (a change larger
than that goes alone in its frame, which the frame limit always admits).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgpack

from meshsync import frames as fr
from meshsync.change import Change
from meshsync.wire import WireEncoder


class OutgoingChanges:
    """Packs ``changes`` into CHANGES frames of about ``frame_target`` bytes."""

    def __init__(self, changes: Iterator[Change], frame_target: int) -> None:
        self._changes, self._target = changes, frame_target
        self._encoder = WireEncoder()
        self._carry: list[bytes] | None = None

    def next_batch(self) -> tuple[list[bytes], int]:
        """``(packed items, number of changes)`` of the next frame; empty when done."""
        items: list[bytes] = []
        size = count = 0
        while size < self._target:
            packed = self._carry or self._encode_next()
            self._carry = None
            if packed is None:
                break
            extra = sum(len(p) for p in packed)
            if items and size + extra > self._target:
                self._carry = packed
                break
            items += packed
            size += extra
            count += 1
        return items, count

    def _encode_next(self) -> list[bytes] | None:
        change = next(self._changes, None)
        if change is None:
            return None
        return [msgpack.packb(i, use_bin_type=True) for i in self._encoder.encode(change)]


def changes_frame(batch: int, items: list[bytes]) -> bytes:
    """A length-prefixed CHANGES frame ``[CHANGES, batch, [items...]]`` from packed items."""
    packer = msgpack.Packer(use_bin_type=True)
    payload = b"".join([packer.pack_array_header(3), packer.pack(fr.CHANGES),
                        packer.pack(batch), packer.pack_array_header(len(items)), *items])
    return len(payload).to_bytes(4, "big") + payload
