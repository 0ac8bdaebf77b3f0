"""Custody receipts: a gateway's or central's signed statement "I hold these changes".

A receipt is the issuer's version vector over one partition prefix (``scope``), signed
with the issuer's device key (Ed25519, RFC 8032) over the canonical msgpack array::

    ["meshsync/receipt", 1, issuer(bin 32), scope(str), at_ms(int),
     [[author(bin 32), partition(str), seq(int)], ...]]          sorted by feed

followed, in the blob, by the 64-byte signature (the whole blob is the 7-element
array). A receipt whose issuer refused changes in its scope is version 2: the signed
array gains one more element, the refusals, signed together with the version vector::

    ["meshsync/receipt", 2, issuer, scope, at_ms, [feeds...],
     [[author(bin 32), partition(str), seq(int), hash(bin 32 or empty), stage(str),
       reason(str)], ...]]                       sorted by (author, partition, seq, stage)

(``hash`` is the refused change's SHA-256 where the issuer keeps it: a change kept but
invalid, a quarantined one; empty otherwise). A receipt with no refusals is always
version 1, byte for byte as before; both versions decode.

**Version 3** (what issuers sign now) adds to each feed entry a short check of the
issuer's change at that seq, the first :data:`CHECK_BYTES` (8) bytes of its SHA-256,
so a receiver can tell "holds my seq N" from "holds *a* seq N" (a fork at the head)::

    ["meshsync/receipt", 3, issuer, scope, at_ms,
     [[author(bin 32), partition(str), seq(int), check(bin 8)], ...]]      (7 elements)
    ["meshsync/receipt", 3, issuer, scope, at_ms, [feeds...], [refusals...]]   (8)

the refusals as in version 2 (present only when there are some). Versions 1 and 2
still decode, with no checks (:attr:`Receipt.checks` empty): custody treats them as
unverified (docs/protocol.md, "Receipts"). Receipts travel like
credentials (bundles, sync sessions); a store keeps only the newest receipt per
``(issuer, scope)``, so they never accumulate. An officer's phone compares its own
feeds with the receipts it holds from gateway- and central-role issuers to see which
of its changes are safe where, and which were refused there and why
(docs/architecture.md §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.errors import DecodeError
from meshsync.model.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, DeviceKey, verify
from meshsync.store.base import in_prefix

TAG = "meshsync/receipt"
VERSION = 1
#: The version of a receipt that lists refusals.
VERSION_REFUSALS = 2
#: The version whose feed entries carry head checks (with or without refusals).
VERSION_CHECKS = 3
#: Bytes of a head check: the prefix of the SHA-256 of the issuer's change at the seq.
CHECK_BYTES = 8
#: Most refusals one receipt lists (the issuer keeps the newest); a stage or reason
#: longer than :data:`MAX_REFUSAL_TEXT` characters is cut there.
MAX_REFUSALS = 256
MAX_REFUSAL_TEXT = 400
SIGN_CONTEXT = b"meshsync receipt v1\x00"
MAX_RECEIPT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Refused:
    """One change the issuer of a receipt refused: feed ``(author, partition)``, ``seq``,
    the change's SHA-256 ``hash`` (``b""`` where the issuer does not keep the change),
    the pipeline ``stage`` (``validation``, ``authorization``, ``hash chain``, ``fork``,
    ``revocation``) and the issuer's ``reason`` (a sentence)."""

    author: bytes
    partition: str
    seq: int
    hash: bytes
    stage: str
    reason: str

    @property
    def feed(self) -> FeedId:
        """``(author, partition)``."""
        return (self.author, self.partition)

    def encode(self) -> list[Any]:
        """The msgpack array of the receipt format (module docs)."""
        return [self.author, self.partition, self.seq, self.hash, self.stage, self.reason]


@dataclass(frozen=True)
class Receipt:
    """A verified receipt. ``vv`` maps feed -> highest contiguous seq the issuer holds;
    ``refused`` lists the changes in its scope the issuer refused (empty: version 1);
    ``checks`` maps feed -> the head check of the issuer's change at that seq (version
    3; empty for versions 1 and 2, whose seqs are unverified)."""

    issuer: bytes
    scope: str
    at_ms: int
    vv: dict[FeedId, int]
    blob: bytes
    refused: tuple[Refused, ...] = ()
    checks: dict[FeedId, bytes] = field(default_factory=dict)
    checked: bool = False

    def check_of(self, feed: FeedId) -> bytes | None:
        """The head check of ``feed`` at :meth:`covers`'s seq; None for a receipt of
        version 1 or 2 (unverified) or a feed it does not list."""
        return self.checks.get(feed) if self.checked else None

    @property
    def sig(self) -> bytes:
        """The issuer's signature (the blob is canonical: it ends with the 64 bytes)."""
        return self.blob[-SIGNATURE_BYTES:]

    def covers(self, feed: FeedId) -> int:
        """The seq the issuer holds of ``feed`` (0 if none or outside the scope)."""
        return self.vv.get(feed, 0) if in_prefix(feed[1], self.scope) else 0


def head_check(hash_: bytes) -> bytes:
    """The head check of a change whose SHA-256 is ``hash_`` (its first
    :data:`CHECK_BYTES` bytes)."""
    return hash_[:CHECK_BYTES]


def _body(issuer: bytes, scope: str, at_ms: int, vv: dict[FeedId, int],
          refused: Sequence[Refused] = (),
          checks: dict[FeedId, bytes] | None = None) -> list[Any]:
    """The signed array; version 3 when ``checks`` is given (one per feed of ``vv``)."""
    kept = [(f, s) for f, s in sorted(vv.items()) if in_prefix(f[1], scope)]
    feeds: list[list[Any]] = [[a, p, s] for (a, p), s in kept]
    listed = sorted((r.encode() for r in refused if in_prefix(r.partition, scope)),
                    key=lambda e: (e[0], e[1], e[2], e[4]))
    if checks is not None:
        feeds = [[a, p, s, checks[(a, p)]] for (a, p), s in kept]
        return [TAG, VERSION_CHECKS, issuer, scope, at_ms, feeds, *([listed] if listed else [])]
    if not listed:
        return [TAG, VERSION, issuer, scope, at_ms, feeds]
    return [TAG, VERSION_REFUSALS, issuer, scope, at_ms, feeds, listed]


def refused_entry(author: bytes, partition: str, seq: int, hash_: bytes, stage: str,
                  reason: str) -> Refused:
    """A :class:`Refused` with ``stage`` and ``reason`` cut to :data:`MAX_REFUSAL_TEXT`
    characters (what an issuer signs)."""
    return Refused(author, partition, seq, hash_, stage[:MAX_REFUSAL_TEXT],
                   reason[:MAX_REFUSAL_TEXT])


def make_receipt(key: DeviceKey, scope: str, at_ms: int, vv: dict[FeedId, int],
                 refused: Sequence[Refused] = (),
                 checks: dict[FeedId, bytes] | None = None) -> bytes:
    """Sign a receipt for the feeds of ``vv`` and the ``refused`` changes inside
    ``scope`` (at most :data:`MAX_REFUSALS` of them: the caller chooses); returns the
    blob. With ``checks`` (feed -> :data:`CHECK_BYTES`-byte :func:`head_check` of the
    issuer's change at the feed's seq, one for every feed of ``vv``) the receipt is
    version 3; without, version 1 or 2 as before. Raises :class:`ValueError` for more
    refusals than that, or a missing or malformed check."""
    if len(refused) > MAX_REFUSALS:
        raise ValueError(f"a receipt lists at most {MAX_REFUSALS} refusals")
    _check_checks(vv, checks)
    body = _body(key.public_key, scope, at_ms, vv, refused, checks)
    sig = key.sign(SIGN_CONTEXT + codec.pack(body))
    return codec.pack([*body, sig])


def _check_checks(vv: dict[FeedId, int], checks: dict[FeedId, bytes] | None) -> None:
    if checks is not None and any(
            not isinstance(checks.get(f), bytes) or len(checks[f]) != CHECK_BYTES for f in vv):
        raise ValueError(f"a version 3 receipt has a {CHECK_BYTES}-byte check per feed")


def assemble_receipt(issuer: bytes, scope: str, at_ms: int, vv: dict[FeedId, int],
                     sig: bytes, refused: Sequence[Refused] = (),
                     checks: dict[FeedId, bytes] | None = None) -> bytes:
    """The canonical blob of a receipt from its parts (a sync session sends receipts
    without what the receiver knows); :func:`decode_receipt` then verifies it.
    Raises :class:`ValueError` for a missing or malformed check (``checks`` as in
    :func:`make_receipt`)."""
    _check_checks(vv, checks)
    return codec.pack([*_body(issuer, scope, at_ms, vv, refused, checks), sig])


def is_receipt(blob: bytes) -> bool:
    """Cheap test whether ``blob`` looks like a receipt (before decoding it)."""
    return TAG.encode() in blob[:24]


def decode_receipt(blob: bytes) -> Receipt:
    """Decode and verify a receipt blob.

    Raises :class:`DecodeError` if malformed and
    :class:`~meshsync.model.errors.SignatureError` if the signature does not verify.
    """
    raw = codec.unpack(blob, max_bytes=MAX_RECEIPT_BYTES)
    if type(raw) is not list or len(raw) < 2 or raw[0] != TAG or (raw[1], len(raw)) not in (
            (VERSION, 7), (VERSION_REFUSALS, 8), (VERSION_CHECKS, 7), (VERSION_CHECKS, 8)):
        raise DecodeError("not a meshsync receipt (version 1, 2 or 3)")
    issuer, scope, at_ms, feeds = raw[2:6]
    sig = raw[-1]
    refused = decode_refused(raw[6]) if len(raw) == 8 else ()
    if len(raw) == 8 and not refused:
        raise DecodeError("a receipt's refusals list no refusal")
    if not isinstance(issuer, bytes) or len(issuer) != PUBLIC_KEY_BYTES or \
            type(scope) is not str or type(at_ms) is not int or type(feeds) is not list or \
            not isinstance(sig, bytes):
        raise DecodeError("malformed receipt fields")
    vv, checks = _decode_feeds(feeds, raw[1] == VERSION_CHECKS)
    body = _body(issuer, scope, at_ms, vv, refused, checks)
    if codec.pack([*body, sig]) != blob:
        raise DecodeError("receipt is not in canonical form")
    verify(issuer, sig, SIGN_CONTEXT + codec.pack(body))
    return Receipt(issuer, scope, at_ms, vv, blob, refused, checks or {}, checks is not None)


def _decode_feeds(feeds: list[Any], with_checks: bool
                  ) -> tuple[dict[FeedId, int], dict[FeedId, bytes] | None]:
    """A receipt's feed entries: three elements each, four with ``with_checks``."""
    vv: dict[FeedId, int] = {}
    checks: dict[FeedId, bytes] = {}
    size = 4 if with_checks else 3
    for entry in feeds:
        if type(entry) is not list or len(entry) != size or not isinstance(entry[0], bytes) \
                or type(entry[1]) is not str or type(entry[2]) is not int or (with_checks and (
                    not isinstance(entry[3], bytes) or len(entry[3]) != CHECK_BYTES)):
            raise DecodeError("malformed receipt entry")
        vv[(entry[0], entry[1])] = entry[2]
        if with_checks:
            checks[(entry[0], entry[1])] = entry[3]
    return vv, (checks if with_checks else None)


def decode_refused(raw: Any) -> tuple[Refused, ...]:
    """The refusals of a receipt or compact receipt (module docs); raises
    :class:`DecodeError` if malformed or more than :data:`MAX_REFUSALS`."""
    if type(raw) is not list or len(raw) > MAX_REFUSALS:
        raise DecodeError("malformed receipt refusals")
    out = []
    for entry in raw:
        if type(entry) is not list or len(entry) != 6:
            raise DecodeError("malformed receipt refusal")
        author, partition, seq, hash_, stage, reason = entry
        if not isinstance(author, bytes) or len(author) != PUBLIC_KEY_BYTES \
                or type(partition) is not str or type(seq) is not int or seq < 1 \
                or not isinstance(hash_, bytes) or len(hash_) not in (0, 32) \
                or type(stage) is not str or type(reason) is not str \
                or len(stage) > MAX_REFUSAL_TEXT or len(reason) > MAX_REFUSAL_TEXT:
            raise DecodeError("malformed receipt refusal")
        out.append(Refused(author, partition, seq, hash_, stage, reason))
    return tuple(out)
