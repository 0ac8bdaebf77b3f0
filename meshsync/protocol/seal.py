"""Sealed bundles: a bundle's items encrypted to the devices allowed to hold them.

Layout (format version 2; docs/protocol.md, "Sealed bundles")::

    b"MSBUNDLE" b"\\x02"                 magic and format version (9 bytes)
    [5, {"version": 2, "suite": [32, 1, 2], "created_ms": int, "creator": bin32,
         "recipients": [[device_key bin32, wrapped bin80], ...],
         "revocations": [blob, ...]}]   seal header, in clear
    [6, ciphertext bin] ...             the version 1 items, AES-256-GCM, 64 KiB a chunk
    b"MSEND" sha256(everything before b"MSEND")                    footer (37 bytes)

A random 32-byte content key encrypts the chunks; it is wrapped to each recipient
with single-shot HPKE (RFC 9180, :mod:`meshsync.protocol.hpke`; base mode: DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256,
AES-256-GCM; ``suite`` holds their code points) under the recipient's X25519 key
(:mod:`meshsync.model.sealkeys`), with ``info`` = :data:`INFO` + the recipient's
device key. Chunk ``i`` (from 0) has the nonce ``i`` as 11 big-endian bytes then 1 for
the last chunk, 0 for the others, and the associated data SHA-256 of the magic and
the seal header item: altering the header (a recipient removed, a revocation added),
reordering, dropping or appending a chunk makes a chunk fail, and the import is
refused whole. Revocations travel in clear, so a device that is not a recipient
(revoked after all) still learns them.

Sans-I/O: the callers hand in the file object and the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshsync.model.errors import DecodeError, SealedError
from meshsync.model.identity import DeviceKey, device_id
from meshsync.model.sealkeys import x25519_private, x25519_public
from meshsync.model.text import Msg
from meshsync.protocol import hpke

SEALED_MAGIC = b"MSBUNDLE\x02"
SEAL, CHUNK_ITEM = 5, 6
#: HPKE code points (RFC 9180 §7): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
SUITE_IDS = [0x20, 1, 2]
INFO = b"meshsync sealed bundle v2\x00"
#: Plaintext bytes per chunk.
PLAIN_CHUNK = 1 << 16
TAG_BYTES = 16
WRAPPED_BYTES = 32 + 32 + TAG_BYTES  # enc (X25519 public) + content key + tag
#: Recipients one seal header may list (about 6 MB of header, within one bundle item).
MAX_RECIPIENTS = 50_000


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def wrap_key(content_key: bytes, recipient: bytes) -> bytes:
    """``content_key`` sealed by HPKE to the device whose Ed25519 key is ``recipient``
    (:data:`WRAPPED_BYTES` bytes: enc, then ciphertext and tag)."""
    return hpke.seal(x25519_public(recipient), content_key, info=INFO + recipient)


def unwrap_key(wrapped: bytes, key: DeviceKey) -> bytes | None:
    """The content key from ``wrapped`` if it was sealed to ``key``; None if not."""
    try:
        return hpke.open_sealed(x25519_private(key.seed()), wrapped,
                                info=INFO + key.public_key)
    except (InvalidTag, ValueError):
        return None


class SealingWriter:
    """A file-like writer: bytes written to it (a version 1 bundle's items) come out
    encrypted to ``recipients`` (raw Ed25519 device keys) in :data:`SEALED_MAGIC`'s
    format. Call :meth:`close` to write the last chunk and the footer; ``count`` is
    the bytes written to ``out`` so far."""

    def __init__(self, out: IO[bytes], recipients: Iterable[bytes], *, created_ms: int,
                 creator: bytes, revocations: Iterable[bytes] = ()) -> None:
        keys = sorted(set(recipients))
        if not keys:
            raise SealedError(Msg("a sealed bundle needs at least one recipient"))
        if len(keys) > MAX_RECIPIENTS:
            raise SealedError(f"a sealed bundle lists at most {MAX_RECIPIENTS} recipients")
        content_key = AESGCM.generate_key(bit_length=256)
        header = msgpack.packb([SEAL, {
            "version": 2, "suite": SUITE_IDS, "created_ms": created_ms, "creator": creator,
            "recipients": [[k, wrap_key(content_key, k)] for k in keys],
            "revocations": sorted(revocations)}], use_bin_type=True)
        self.out, self.digest, self.count = out, hashlib.sha256(), 0
        self._aead, self._aad = AESGCM(content_key), hashlib.sha256(SEALED_MAGIC + header).digest()
        self._buffer, self._index = bytearray(), 0
        self._raw(SEALED_MAGIC + header)

    def _raw(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.count += len(data)

    def _chunk(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, last), plain, self._aad)
        self._raw(msgpack.packb([CHUNK_ITEM, sealed], use_bin_type=True))
        self._index += 1

    def write(self, data: bytes) -> None:
        """Buffer ``data``; full chunks are encrypted and written out."""
        self._buffer += data
        while len(self._buffer) > PLAIN_CHUNK:
            self._chunk(bytes(self._buffer[:PLAIN_CHUNK]), False)
            del self._buffer[:PLAIN_CHUNK]

    def close(self) -> int:
        """Write the last chunk and the footer; returns the file's size in bytes."""
        self._chunk(bytes(self._buffer), True)
        self._buffer.clear()
        footer = b"MSEND" + self.digest.digest()
        self.out.write(footer)
        return self.count + len(footer)


@dataclass
class SealHeader:
    """A sealed bundle's clear header: ``recipients`` maps device key to wrapped key."""

    created_ms: int
    creator: bytes
    recipients: dict[bytes, bytes]
    revocations: list[bytes]
    aad: bytes
    end: int  # file offset of the first chunk item


def _check_seal(fields: Any) -> None:
    if type(fields) is not dict or fields.get("version") != 2 or \
            fields.get("suite") != SUITE_IDS:
        raise DecodeError("sealed bundle header is malformed or of an unknown suite")
    recipients, revocations = fields.get("recipients"), fields.get("revocations")
    if type(recipients) is not list or not 0 < len(recipients) <= MAX_RECIPIENTS or \
            type(revocations) is not list or type(fields.get("created_ms")) is not int:
        raise DecodeError("sealed bundle header is malformed (recipients, revocations)")
    for entry in recipients:
        if type(entry) is not list or len(entry) != 2 or not all(
                isinstance(v, bytes) for v in entry) or len(entry[0]) != 32 or \
                len(entry[1]) != WRAPPED_BYTES:
            raise DecodeError("sealed bundle header is malformed (a recipient entry)")
    if not all(isinstance(b, bytes) for b in revocations):
        raise DecodeError("sealed bundle header is malformed (revocations)")


def read_seal_header(f: IO[bytes], size: int, max_bytes: int) -> SealHeader:
    """Read the clear header of the sealed bundle ``f`` (``size`` bytes; its footer
    already checked). Raises :class:`DecodeError` if it is malformed or larger than
    ``max_bytes``."""
    f.seek(len(SEALED_MAGIC))
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max_bytes)
    try:
        unpacker.feed(f.read(min(max_bytes, size - len(SEALED_MAGIC))))
        item = unpacker.unpack()
    except (msgpack.OutOfData, msgpack.BufferFull, ValueError, TypeError) as exc:
        raise DecodeError("sealed bundle header is malformed or too large") from exc
    if type(item) is not list or len(item) != 2 or item[0] != SEAL:
        raise DecodeError("sealed bundle header missing")
    _check_seal(item[1])
    end = len(SEALED_MAGIC) + unpacker.tell()
    f.seek(0)
    aad = hashlib.sha256(f.read(end)).digest()
    fields = item[1]
    return SealHeader(fields["created_ms"], fields.get("creator") or b"",
                      {k: w for k, w in fields["recipients"]}, list(fields["revocations"]),
                      aad, end)


def content_key_for(header: SealHeader, key: DeviceKey, enrolled: bool) -> bytes:
    """The content key ``header`` wraps for the device ``key``.

    Raises :class:`SealedError` saying why this device cannot open the bundle: the
    home is not enrolled (``enrolled`` False), or this device is not a recipient.
    """
    n = len(header.recipients)
    if not enrolled:
        raise SealedError(Msg(
            "this bundle is sealed to %(n)d devices and this home is not enrolled, so "
            "it cannot open it (enrol the device first: meshsync enroll)", n=n))
    wrapped = header.recipients.get(key.public_key)
    content_key = unwrap_key(wrapped, key) if wrapped is not None else None
    if wrapped is None:
        raise SealedError(Msg(
            "this bundle is sealed to %(n)d devices and this device (%(id)s) is not one "
            "of them: it is for devices of another area, or this device was revoked",
            n=n, id=device_id(key.public_key)[:8]))
    if content_key is None:
        raise SealedError(Msg("this bundle's key for this device does not open: the "
                              "file was altered"))
    return content_key


def plaintext_chunks(f: IO[bytes], header: SealHeader, content_key: bytes,
                     size: int, max_item: int) -> Iterator[bytes]:
    """Decrypt the chunks of ``f`` after ``header``, in order. Raises
    :class:`SealedError` if one does not authenticate or the last is missing, and
    :class:`DecodeError` if the chunk items are malformed."""
    f.seek(header.end)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max_item)
    aead, total = AESGCM(content_key), size - 37 - header.end
    left, index, last = total, 0, False
    while left:
        data = f.read(min(PLAIN_CHUNK * 2, left))
        left -= len(data)
        unpacker.feed(data)
        for item in _chunk_items(unpacker):
            if last or type(item) is not list or len(item) != 2 or item[0] != CHUNK_ITEM \
                    or not isinstance(item[1], bytes):
                raise DecodeError("sealed bundle chunk is malformed or after the last")
            last = left == 0 and unpacker.tell() == total
            yield _open_chunk(aead, index, item[1], header.aad, last)
            index += 1
    if not last:
        raise SealedError(Msg("this sealed bundle is cut short: its last part is missing"))


def _chunk_items(unpacker: msgpack.Unpacker) -> Iterator[Any]:
    """The items complete in ``unpacker``; DecodeError for malformed bytes."""
    while True:
        try:
            yield unpacker.unpack()
        except msgpack.OutOfData:
            return
        except (msgpack.BufferFull, ValueError, TypeError) as exc:
            raise DecodeError("sealed bundle chunk is malformed") from exc


def _open_chunk(aead: AESGCM, index: int, sealed: bytes, aad: bytes, last: bool) -> bytes:
    try:
        return aead.decrypt(_nonce(index, last), sealed, aad)
    except InvalidTag:
        raise SealedError(Msg("part %(n)d of this sealed bundle does not authenticate: "
                              "the file was altered", n=index + 1)) from None


__all__ = ["SEALED_MAGIC", "SealHeader", "SealingWriter", "content_key_for",
           "plaintext_chunks", "read_seal_header", "unwrap_key", "wrap_key"]
