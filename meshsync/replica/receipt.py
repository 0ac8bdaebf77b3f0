"""Custody receipts: a gateway's or central's signed statement "I hold these changes".

A receipt is the issuer's version vector over one partition prefix (``scope``), signed
with the issuer's device key (Ed25519, RFC 8032) over the canonical msgpack array::

    ["meshsync/receipt", 1, issuer(bin 32), scope(str), at_ms(int),
     [[author(bin 32), partition(str), seq(int)], ...]]          sorted by feed

followed, in the blob, by the 64-byte signature (the whole blob is the 7-element
array). Receipts travel like credentials (bundles, sync sessions); a store keeps only
the newest receipt per ``(issuer, scope)``, so they never accumulate. An officer's
phone compares its own feeds with the receipts it holds from gateway- and
central-role issuers to see which of its changes are safe where (docs/architecture.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.errors import DecodeError
from meshsync.model.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, DeviceKey, verify
from meshsync.store.base import in_prefix

TAG = "meshsync/receipt"
VERSION = 1
SIGN_CONTEXT = b"meshsync receipt v1\x00"
MAX_RECEIPT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Receipt:
    """A verified receipt. ``vv`` maps feed -> highest contiguous seq the issuer holds."""

    issuer: bytes
    scope: str
    at_ms: int
    vv: dict[FeedId, int]
    blob: bytes

    @property
    def sig(self) -> bytes:
        """The issuer's signature (the blob is canonical: it ends with the 64 bytes)."""
        return self.blob[-SIGNATURE_BYTES:]

    def covers(self, feed: FeedId) -> int:
        """The seq the issuer holds of ``feed`` (0 if none or outside the scope)."""
        return self.vv.get(feed, 0) if in_prefix(feed[1], self.scope) else 0


def _body(issuer: bytes, scope: str, at_ms: int, vv: dict[FeedId, int]) -> list[Any]:
    feeds = [[a, p, s] for (a, p), s in sorted(vv.items()) if in_prefix(p, scope)]
    return [TAG, VERSION, issuer, scope, at_ms, feeds]


def make_receipt(key: DeviceKey, scope: str, at_ms: int, vv: dict[FeedId, int]) -> bytes:
    """Sign a receipt for the feeds of ``vv`` inside ``scope``; returns the blob."""
    body = _body(key.public_key, scope, at_ms, vv)
    sig = key.sign(SIGN_CONTEXT + codec.pack(body))
    return codec.pack([*body, sig])


def assemble_receipt(issuer: bytes, scope: str, at_ms: int, vv: dict[FeedId, int],
                     sig: bytes) -> bytes:
    """The canonical blob of a receipt from its parts (a sync session sends receipts
    without what the receiver knows); :func:`decode_receipt` then verifies it."""
    return codec.pack([*_body(issuer, scope, at_ms, vv), sig])


def is_receipt(blob: bytes) -> bool:
    """Cheap test whether ``blob`` looks like a receipt (before decoding it)."""
    return TAG.encode() in blob[:24]


def decode_receipt(blob: bytes) -> Receipt:
    """Decode and verify a receipt blob.

    Raises :class:`DecodeError` if malformed and
    :class:`~meshsync.model.errors.SignatureError` if the signature does not verify.
    """
    raw = codec.unpack(blob, max_bytes=MAX_RECEIPT_BYTES)
    if type(raw) is not list or len(raw) != 7 or raw[0] != TAG or raw[1] != VERSION:
        raise DecodeError("not a meshsync receipt (version 1)")
    _, _, issuer, scope, at_ms, feeds, sig = raw
    if not isinstance(issuer, bytes) or len(issuer) != PUBLIC_KEY_BYTES or \
            type(scope) is not str or type(at_ms) is not int or type(feeds) is not list or \
            not isinstance(sig, bytes):
        raise DecodeError("malformed receipt fields")
    vv: dict[FeedId, int] = {}
    for entry in feeds:
        if type(entry) is not list or len(entry) != 3 or not isinstance(entry[0], bytes) \
                or type(entry[1]) is not str or type(entry[2]) is not int:
            raise DecodeError("malformed receipt entry")
        vv[(entry[0], entry[1])] = entry[2]
    body = _body(issuer, scope, at_ms, vv)
    if codec.pack([*body, sig]) != blob:
        raise DecodeError("receipt is not in canonical form")
    verify(issuer, sig, SIGN_CONTEXT + codec.pack(body))
    return Receipt(issuer, scope, at_ms, vv, blob)
