"""Session framing and messages.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack: an
array whose first element is the message type. The length is checked against the
limit before any byte of the payload is buffered (docs/protocol.md: frame size limit
comes before decode).
"""

from __future__ import annotations

import struct
from typing import Any

from meshsync.model import codec
from meshsync.model.errors import DecodeError, FrameTooLargeError
from meshsync.model.limits import MAX_ITEM_BYTES

#: Version 3 (this one) adds a 4-byte head check per VV entry, covers each feed's
#: head hash in the SUMMARY and FIN digests (a fork at the head seq is seen and its
#: evidence exchanged) and sends end-of-session receipts of receipt version 3 (head
#: checks). Version 2 sent version vectors, feed sections, small changes and
#: end-of-session receipts in compact forms (meshsync.protocol.meta,
#: meshsync.protocol.stream); version 1 sent 32-byte keys and partitions in every VV
#: entry and receipt entry, a partition and 32-byte prev hash with every feed section
#: and every name in full. The versions do not interoperate: HELLO refuses a peer of
#: another version with an error naming both.
PROTOCOL_VERSION = 3

#: Largest frame accepted: one maximal change plus framing (bytes).
MAX_FRAME_BYTES = MAX_ITEM_BYTES + 64 * 1024

#: Size a sender aims for when batching changes into one frame (bytes).
FRAME_TARGET_BYTES = 64 * 1024

HELLO, SUMMARY, VV, CRED, CHANGES, ACK, SENT_ALL, FIN, ERROR, RCPT = range(1, 11)
NAMES = {HELLO: "hello", SUMMARY: "summary", VV: "version vector", CRED: "credentials",
         CHANGES: "changes", ACK: "ack", SENT_ALL: "sent-all", FIN: "fin", ERROR: "error",
         RCPT: "receipts"}

_LEN = struct.Struct(">I")


def encode_frame(message: list[Any]) -> bytes:
    """Length-prefixed msgpack frame of ``message``."""
    payload = codec.pack(message)
    return _LEN.pack(len(payload)) + payload


class FrameReader:
    """Buffers received bytes and yields complete messages (h11-style ``receive_data``)."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self.eof = False

    def feed(self, data: bytes) -> None:
        """Add received bytes; empty ``data`` means the peer closed (EOF)."""
        if not data:
            self.eof = True
        self._buf += data

    def next_message(self) -> tuple[list[Any], int] | None:
        """The next complete message and its frame size in bytes, or None if incomplete.

        Raises :class:`FrameTooLargeError` for an oversized length and
        :class:`DecodeError` for a malformed payload or a frame cut by EOF.
        """
        if len(self._buf) < _LEN.size:
            if self.eof and self._buf:
                raise DecodeError("connection closed inside a frame header")
            return None
        (length,) = _LEN.unpack_from(self._buf)
        if length > self._max:
            raise FrameTooLargeError(f"frame of {length} bytes exceeds limit {self._max}")
        end = _LEN.size + length
        if len(self._buf) < end:
            if self.eof:
                raise DecodeError("connection closed inside a frame")
            return None
        payload = bytes(self._buf[_LEN.size:end])
        del self._buf[:end]
        message = codec.unpack(payload, max_bytes=self._max)
        if type(message) is not list or not message or type(message[0]) is not int \
                or message[0] not in NAMES:
            raise DecodeError("frame is not a meshsync message")
        return message, end

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf)
