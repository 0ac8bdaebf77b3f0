"""Bundles: files of signed changes and credentials, for sneakernet.

Layout (version 1)::

    b"MSBUNDLE" b"\\x01"                  magic and format version (9 bytes)
    msgpack items:
      [3, {"created_ms": int, "creator": bin32, "version": 1}]     header
      [4, credential]                     certificate or revocation (zero or more)
      wire items (tags 0, 1, 2)           changes, see meshsync.protocol.wire
      [9, n_changes, n_credentials]       end marker
    b"MSEND" sha256(everything before b"MSEND")                    footer (37 bytes)

Import first checks the footer digest (a cheap pass: any changed or missing byte
is found here), then reads the items once, inside one store transaction: every
signature is verified before that transaction commits, and any integrity failure
(decode, checksum, signature) rolls the whole import back, so the store is
unchanged. Per-change refusals (authorization, fork, gap) and validation failures
are reported and the rest of the bundle applies (see :mod:`meshsync.replica.receive`).
Memory stays bounded: items are streamed and touched records are flushed to the
store every few thousand ops.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import msgpack

from meshsync.model import codec
from meshsync.model.change import Change
from meshsync.model.errors import AuthorizationError, DecodeError, FrameTooLargeError, RemoteError
from meshsync.model.identity import device_id, sha256
from meshsync.model.limits import MAX_ITEM_BYTES
from meshsync.protocol.seal import (
    SEALED_MAGIC,
    SealingWriter,
    content_key_for,
    plaintext_chunks,
    read_seal_header,
)
from meshsync.protocol.wire import WireDecoder, WireEncoder
from meshsync.replica.node import Node, VersionVector
from meshsync.replica.receive import ApplyReport
from meshsync.store.base import Refusal
from meshsync.trust.revocation import is_revocation

MAGIC = b"MSBUNDLE\x01"
FOOTER = b"MSEND"
FOOTER_BYTES = len(FOOTER) + 32
HEADER, CREDENTIAL, END = 3, 4, 9
CHUNK = 1 << 16
#: Record states held between flushes are bounded by ops, not changes: a batched
#: change carries up to MAX_OPS_PER_CHANGE records.
FLUSH_EVERY = 2000
#: Changes read ahead before they enter the pipeline, so their signatures can be
#: checked together (bounded also by FLUSH_EVERY ops).
VERIFY_BATCH = 1024

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` (bytes) during long operations."""


@dataclass
class BundleReport:
    """Result of an import: the apply report plus credential counts, and the changes
    held before that a revocation in the bundle quarantined (``quarantined``)."""

    apply: ApplyReport
    credentials_new: int = 0
    #: Of ``credentials_new``: certificates whose issuer is not trusted here (kept,
    #: but they verify nothing: e.g. a bundle from another authority).
    credentials_unverified: int = 0
    credentials_refused: list[str] = field(default_factory=list)
    quarantined: list[Refusal] = field(default_factory=list)
    bytes: int = 0

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        out = self.apply.to_json()
        out.update(credentials_new=self.credentials_new,
                   credentials_unverified=self.credentials_unverified,
                   credentials_refused=self.credentials_refused,
                   quarantined=[{"author": device_id(r.author), "partition": r.partition,
                                 "seq": r.seq, "stage": r.stage, "reason": r.reason}
                                for r in self.quarantined],
                   bytes=self.bytes)
        return out


class _HashingWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.digest, self.count = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.count += len(data)


def export_bundle(node: Node, out: IO[bytes], since: VersionVector | None = None,
                  progress: Progress | None = None) -> tuple[int, int]:
    """Write every credential and every change beyond ``since`` to ``out``, in clear
    (format version 1; :func:`export_sealed` encrypts).

    Returns ``(changes, bytes)`` written. ``progress(done, total)`` counts changes.
    """
    w = _HashingWriter(out)
    w.write(MAGIC)
    count = _write_items(node, w, since, progress)
    out.write(FOOTER + w.digest.digest())
    return count, w.count + FOOTER_BYTES


def export_sealed(node: Node, out: IO[bytes], recipients: list[bytes],
                  since: VersionVector | None = None,
                  progress: Progress | None = None,
                  extra: Iterable[Change] = ()) -> tuple[int, int]:
    """Like :func:`export_bundle`, sealed to ``recipients`` (raw Ed25519 device keys;
    see :mod:`meshsync.protocol.seal`). The revocations the node holds also travel in
    the clear header. ``extra``: changes not in the node's feeds to add after them (a
    revoked device's quarantined own changes, for its evidence bundle), in feed and
    seq order. Returns ``(changes, bytes)``; raises
    :class:`~meshsync.model.errors.SealedError` if ``recipients`` is empty."""
    revocations = [b for b in node.store.credentials() if is_revocation(b)]
    w = SealingWriter(out, recipients, created_ms=node.now_ms(),
                      creator=node.key.public_key, revocations=revocations)
    count = _write_items(node, w, since, progress, extra)
    return count, w.close()


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...


def _write_items(node: Node, w: _Sink, since: VersionVector | None,
                 progress: Progress | None, extra: Iterable[Change] = ()) -> int:
    """The items of a bundle, header to end marker, into ``w``; returns the changes."""
    since = since or {}
    vv = node.version_vector()
    total = sum(max(0, seq - since.get(feed, 0)) for feed, seq in vv.items())
    packer = msgpack.Packer(use_bin_type=True)
    w.write(packer.pack([HEADER, {"created_ms": node.now_ms(),
                                  "creator": node.key.public_key, "version": 1}]))
    creds = node.store.credentials()
    for blob in creds:
        w.write(packer.pack([CREDENTIAL, blob]))
    encoder, count = WireEncoder(), 0
    for change in itertools.chain(node.changes_since(since), extra):
        for item in encoder.encode(change):
            w.write(packer.pack(item))
        count += 1
        if progress is not None and count % 500 == 0:
            progress(count, total)
    w.write(packer.pack([END, count, len(creds)]))
    if progress is not None:
        progress(count, total)
    return count


def _check_footer(f: IO[bytes], size: int) -> bytes:
    """Check the footer's digest; returns the magic (clear or sealed)."""
    if size < len(MAGIC) + FOOTER_BYTES:
        raise DecodeError("bundle truncated: file too short")
    f.seek(0)
    magic = f.read(len(MAGIC))
    if magic not in (MAGIC, SEALED_MAGIC):
        raise DecodeError("not a meshsync bundle (bad magic or unsupported version)")
    f.seek(0)
    digest, left = hashlib.sha256(), size - FOOTER_BYTES
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise DecodeError("bundle truncated while reading")
        digest.update(chunk)
        left -= len(chunk)
    footer = f.read(FOOTER_BYTES)
    if footer[: len(FOOTER)] != FOOTER:
        raise DecodeError("bundle truncated or not ended: footer missing")
    if footer[len(FOOTER):] != digest.digest():
        raise DecodeError("bundle checksum mismatch: the file is corrupted or was altered")
    return magic


def _file_chunks(f: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    f.seek(start)
    while length:
        chunk = f.read(min(CHUNK, length))
        if not chunk:
            raise DecodeError("bundle truncated while reading")
        length -= len(chunk)
        yield chunk


def _too_large() -> FrameTooLargeError:
    return FrameTooLargeError(f"bundle item larger than {MAX_ITEM_BYTES} bytes")


def _items(chunks: Iterable[bytes], size: int, progress: Progress | None) -> Iterator[Any]:
    """The msgpack items of the byte ``chunks`` (a bundle's body, clear or decrypted);
    ``size``: the file's size, for ``progress``."""
    # The buffer holds at most one unfinished item plus one chunk, so a longer item
    # is refused before it is held whole (BufferFull), a declared length past the
    # buffer from its header alone (msgpack's "exceeds max_..._len" ValueError), and
    # the few bytes between MAX_ITEM_BYTES and the buffer size by the tell() check.
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True,
                                max_buffer_size=MAX_ITEM_BYTES + CHUNK)
    done = start = 0
    for chunk in chunks:
        done += len(chunk)
        try:
            unpacker.feed(chunk)
            for item in unpacker:
                end = unpacker.tell()
                if end - start > MAX_ITEM_BYTES:
                    raise _too_large()
                start = end
                yield item
        except msgpack.BufferFull as exc:
            raise _too_large() from exc
        except (ValueError, TypeError) as exc:  # incl. msgpack.FormatError, StackError
            if "exceeds max_" in str(exc):
                raise _too_large() from exc
            raise DecodeError(f"malformed bundle item: {codec.describe_error(exc)}") from exc
        if progress is not None:
            progress(min(done, size), size)
    if unpacker.tell() != done:
        raise DecodeError("bundle ends inside an item")


def _check_header(header: dict[Any, Any]) -> None:
    """The header's fields, as :func:`export_bundle` writes them (see module docs)."""
    if header.get("version") != 1 or type(header.get("version")) is not int:
        raise DecodeError(f"bundle format version {header.get('version')!r} is not "
                          "supported (this build reads version 1)")
    if type(header.get("created_ms")) is not int or not (
            isinstance(header.get("creator"), bytes) and len(header["creator"]) == 32):
        raise DecodeError("bundle header is malformed (created_ms, creator)")


class _Importer:
    def __init__(self, node: Node, source: str) -> None:
        self.node, self.source = node, source
        self.receiver = node.receiver(source)
        self.report = BundleReport(self.receiver.report)
        self.decoder = WireDecoder()
        self.changes = self.creds = self.unflushed_ops = 0
        self.pending: list[Change] = []
        self.state = "header"
        self.revoked = False  # a revocation new here: quarantine once the batch is in

    def item(self, item: Any) -> None:
        tag = item[0] if type(item) is list and item else None
        if self.state == "header":
            if tag != HEADER or len(item) != 2 or type(item[1]) is not dict:
                raise DecodeError("bundle header missing")
            _check_header(item[1])
            self.state = "body"
        elif self.state == "ended":
            raise DecodeError("data after the bundle's end marker")
        elif tag == CREDENTIAL and len(item) == 2 and isinstance(item[1], bytes):
            self.drain()  # changes read before a credential are judged without it
            self.credential(item[1])
        elif tag == END:
            self.end(item)
        else:
            change = self.decoder.decode(item)
            if change is not None:
                self.change(change)

    def credential(self, blob: bytes) -> None:
        self.creds += 1
        adder = getattr(self.node.trust, "add", None)
        pending = getattr(self.node.trust, "pending_count", 0)
        try:
            learned = adder(blob) if adder is not None else None
        except AuthorizationError as exc:
            self.report.credentials_refused.append(exc.detail)
            return
        new = self.node.store.add_credential(sha256(blob), blob)
        if new:
            self.report.credentials_new += 1
            if getattr(self.node.trust, "pending_count", 0) > pending:
                self.report.credentials_unverified += 1
        self.revoked |= learned == "revocation" or (new and is_revocation(blob))

    def change(self, change: Change) -> None:
        self.changes += 1
        self.pending.append(change)
        self.unflushed_ops += len(change.ops)
        if self.unflushed_ops >= FLUSH_EVERY or len(self.pending) >= VERIFY_BATCH:
            self.drain()

    def drain(self) -> None:
        """Run the changes read so far through the pipeline, their signatures first
        checked together (on several cores when the node has a verifier)."""
        self.receiver.verify_ahead(self.pending)
        for change in self.pending:
            self.receiver.receive_one(change)
        self.pending.clear()
        if self.unflushed_ops >= FLUSH_EVERY:
            self.receiver.flush()
            self.unflushed_ops = 0

    def end(self, item: list[Any]) -> None:
        if len(item) != 3 or item[1:] != [self.changes, self.creds]:
            raise DecodeError(f"bundle end marker counts {item[1:]} do not match the "
                              f"{self.changes} changes and {self.creds} credentials read")
        self.state = "ended"


def import_bundle(node: Node, f: IO[bytes], *, source: str = "bundle",
                  progress: Progress | None = None) -> BundleReport:
    """Import a bundle, clear or sealed, from a seekable binary file (see the module
    docs and :mod:`meshsync.protocol.seal` for the rules).

    Raises :class:`~meshsync.model.errors.RemoteError` subclasses (``DecodeError``,
    ``SignatureError``, ``FrameTooLargeError``) with nothing stored,
    :class:`~meshsync.model.errors.StorageLowError` (nothing stored) if the node's
    ``inbound_guard`` refuses a bundle of this size, and
    :class:`~meshsync.model.errors.SealedError` for a sealed bundle this device
    cannot open (then only the revocations of its clear header are stored).
    """
    f.seek(0, 2)
    size = f.tell()
    magic = _check_footer(f, size)
    if node.inbound_guard is not None:
        node.inbound_guard(size)
    if magic == SEALED_MAGIC:
        header = read_seal_header(f, size, MAX_ITEM_BYTES)
        learn_revocations(node, header.revocations, source)
        content_key = content_key_for(header, node.key, is_enrolled(node))
        chunks = plaintext_chunks(f, header, content_key, size, MAX_ITEM_BYTES + CHUNK)
    else:
        chunks = _file_chunks(f, len(MAGIC), size - FOOTER_BYTES - len(MAGIC))
    imp = _Importer(node, source)
    saved_clock = node.hlc.last
    try:
        with node.store.transaction():
            for item in _items(chunks, size, progress):
                imp.item(item)
            if imp.state != "ended":
                raise DecodeError("bundle has no end marker")
            imp.drain()
            imp.receiver.flush()
            if imp.revoked:
                imp.report.quarantined = node.quarantine_revoked(source)
            node.save_clock()
    except BaseException:
        node.hlc.last = saved_clock  # nothing of a refused bundle, not even its clock
        raise
    imp.report.bytes = size
    return imp.report


def is_enrolled(node: Node) -> bool:
    """True if the node holds a verified certificate of its own key (never for a node
    without a trust store: an unenrolled home's open policy)."""
    info = getattr(node.trust, "device_info", None)
    return info is not None and any(r["status"] == "verified" for r in info(node.key.public_key))


def learn_revocations(node: Node, blobs: list[bytes], source: str) -> int:
    """Store the revocations among ``blobs`` that verify here, in one transaction,
    quarantining what they take back; returns how many were new. Anything else, and
    what does not verify, is skipped (a sealed header's revocations are a courtesy to
    devices that cannot open the rest)."""
    adder, new = getattr(node.trust, "add", None), 0
    if adder is None:
        return 0
    with node.store.transaction():
        for blob in blobs:
            if not is_revocation(blob):
                continue
            try:
                adder(blob)
            except AuthorizationError:
                continue
            new += node.store.add_credential(sha256(blob), blob)
        if new:
            node.quarantine_revoked(source)
    return new


__all__ = ["BundleReport", "RemoteError", "export_bundle", "export_sealed", "import_bundle",
           "is_enrolled", "learn_revocations"]
