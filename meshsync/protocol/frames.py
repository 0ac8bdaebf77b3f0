"""Session framing and messages.

A frame is a 4-byte big-endian word followed by a payload: its low 31 bits are the
payload's length, checked against the limit before any byte of the payload is
buffered (docs/protocol.md: frame size limit comes before decode). With the top bit
clear the payload is msgpack: an array whose first element is the message type. With
it set (version 4: a *compressed frame*) the payload is one byte naming the preset
dictionary (:mod:`meshsync.protocol.zdict`) and a zlib stream of that msgpack array,
inflated into at most the frame limit: a frame that would expand beyond it is refused
(stage ``size``) before any of it is decoded. A sender compresses a frame only when that
makes it shorter, and only once both HELLOs agreed on a dictionary.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from meshsync.model import codec
from meshsync.model.errors import DecodeError, FrameTooLargeError
from meshsync.model.limits import MAX_ITEM_BYTES
from meshsync.model.text import Msg
from meshsync.protocol.zdict import DICTIONARIES

#: Version 4 (this one) adds compressed frames (a flag in the length word, a preset
#: dictionary agreed in the HELLO's ``zlib`` list). Version 3 added a 4-byte head
#: check per VV entry, covered each feed's head hash in the SUMMARY and FIN digests (a
#: fork at the head seq is seen and its evidence exchanged) and sent end-of-session
#: receipts of receipt version 3 (head checks). Version 2 sent version vectors, feed
#: sections, small changes and end-of-session receipts in compact forms
#: (meshsync.protocol.meta, meshsync.protocol.stream); version 1 sent 32-byte keys and
#: partitions in every VV entry and receipt entry, a partition and 32-byte prev hash
#: with every feed section and every name in full. The versions do not interoperate:
#: HELLO refuses a peer of another version, naming the version that must upgrade.
PROTOCOL_VERSION = 4

#: Largest frame accepted: one maximal change plus framing (bytes).
MAX_FRAME_BYTES = MAX_ITEM_BYTES + 64 * 1024

#: Size a sender aims for when batching changes into one frame (bytes).
FRAME_TARGET_BYTES = 64 * 1024

HELLO, SUMMARY, VV, CRED, CHANGES, ACK, SENT_ALL, FIN, ERROR, RCPT = range(1, 11)
NAMES = {HELLO: "hello", SUMMARY: "summary", VV: "version vector", CRED: "credentials",
         CHANGES: "changes", ACK: "ack", SENT_ALL: "sent-all", FIN: "fin", ERROR: "error",
         RCPT: "receipts"}

_LEN = struct.Struct(">I")

#: Top bit of the length word: the payload is compressed.
COMPRESSED = 0x8000_0000

#: Frames with a payload shorter than this are never compressed (bytes).
MIN_COMPRESS = 48

#: zlib level of compressed frames (1 fastest .. 9 smallest).
ZLIB_LEVEL = 6


@dataclass(frozen=True)
class Compression:
    """The preset dictionary a session agreed on: its id and bytes."""

    dict_id: int
    zdict: bytes

    @classmethod
    def of(cls, dict_id: int) -> Compression:
        """The compression of dictionary ``dict_id`` (a key of
        :data:`~meshsync.protocol.zdict.DICTIONARIES`; KeyError otherwise)."""
        return cls(dict_id, DICTIONARIES[dict_id])


def compress_frame(frame: bytes, compression: Compression | None) -> bytes:
    """``frame`` (as :func:`encode_frame` makes it) compressed with ``compression``'s
    dictionary, or ``frame`` itself when there is none, it is short or it would not
    get shorter."""
    if compression is None or len(frame) < _LEN.size + MIN_COMPRESS:
        return frame
    deflate = zlib.compressobj(ZLIB_LEVEL, zdict=compression.zdict)
    body = b"".join((bytes((compression.dict_id,)),
                     deflate.compress(memoryview(frame)[_LEN.size:]), deflate.flush()))
    if len(body) >= len(frame) - _LEN.size:
        return frame
    return _LEN.pack(len(body) | COMPRESSED) + body


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
        self.compression: Compression | None = None
        """The dictionary compressed frames must use; None: they are refused."""

    def feed(self, data: bytes) -> None:
        """Add received bytes; empty ``data`` means the peer closed (EOF)."""
        if not data:
            self.eof = True
        self._buf += data

    def next_message(self) -> tuple[list[Any], int] | None:
        """The next complete message and its frame size in bytes, or None if incomplete.

        Raises :class:`FrameTooLargeError` for an oversized length or a compressed
        payload that would inflate beyond the limit, and :class:`DecodeError` for a
        malformed payload, a frame cut by EOF, or a compressed frame that is not a whole
        zlib stream of the agreed dictionary.
        """
        if len(self._buf) < _LEN.size:
            if self.eof and self._buf:
                raise DecodeError("connection closed inside a frame header")
            return None
        (word,) = _LEN.unpack_from(self._buf)
        length = word & ~COMPRESSED
        if length > self._max:
            kind = "compressed frame" if word & COMPRESSED else "frame"
            raise FrameTooLargeError(f"{kind} of {length} bytes exceeds limit {self._max}")
        end = _LEN.size + length
        if len(self._buf) < end:
            if self.eof:
                raise DecodeError("connection closed inside a frame")
            return None
        payload = bytes(self._buf[_LEN.size:end])
        del self._buf[:end]
        if word & COMPRESSED:
            payload = self._inflate(payload)
        message = codec.unpack(payload, max_bytes=self._max)
        if type(message) is not list or not message or type(message[0]) is not int \
                or message[0] not in NAMES:
            raise DecodeError("frame is not a meshsync message")
        return message, end

    def _inflate(self, payload: bytes) -> bytes:
        """The msgpack payload of a compressed frame, at most the frame limit."""
        agreed = self.compression
        if agreed is None:
            raise DecodeError(Msg("compressed frame, but this session agreed on no "
                                  "compression"))
        if not payload or payload[0] != agreed.dict_id:
            raise DecodeError(Msg(
                "compressed frame names dictionary %(got)s; this session agreed on "
                "dictionary %(agreed)d", got=payload[0] if payload else "none",
                agreed=agreed.dict_id))
        inflate = zlib.decompressobj(zdict=agreed.zdict)
        try:
            out = inflate.decompress(memoryview(payload)[1:], self._max)
        except zlib.error as exc:
            raise DecodeError(Msg("compressed frame is not a valid zlib stream: %(error)s",
                                  error=str(exc))) from None
        if inflate.unconsumed_tail or (not inflate.eof and len(out) >= self._max):
            raise FrameTooLargeError(Msg(
                "compressed frame expands beyond the frame limit of %(limit)d bytes",
                limit=self._max))
        if not inflate.eof or inflate.unused_data:
            raise DecodeError(Msg("compressed frame's zlib stream is cut short or "
                                  "followed by other bytes"))
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf)
