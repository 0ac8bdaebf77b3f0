"""Revocations: signed records that cut a device off after a given seq.

Encoding (canonical msgpack, ``use_bin_type``; the blob is the identity)::

    [ "meshsync/revocation",   # type tag
      1,                       # version
      device_key,              # bin, 32 raw Ed25519 bytes of the revoked device
      after_seq,               # int >= 0, or nil = every change is refused
      at_ms,                   # int, issued time, ms since the Unix epoch
      issuer_cert,             # bin, DER certificate of the signing authority
      signature ]              # bin, ECDSA P-256 / SHA-256 (DER, RFC 6979 deterministic)

The signature covers the msgpack encoding of the first six elements (an array
of six). Embedding the issuer's certificate makes a revocation checkable on
arrival, without waiting for the sub-authority certificate to travel. A
decoder accepts only the canonical encoding, so one revocation is one blob.

A file may carry it PEM-armoured (``-----BEGIN MESHSYNC REVOCATION-----``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import PUBLIC_KEY_BYTES, short_id
from meshsync.trust import signed
from meshsync.trust.issue import AuthorityKey
from meshsync.trust.profile import MAX_CREDENTIAL_BYTES, CertInfo

REVOCATION_TAG = "meshsync/revocation"
REVOCATION_VERSION = 1
PEM_LABEL = "MESHSYNC REVOCATION"
_PEM_BEGIN, _PEM_END = signed.pem_markers(PEM_LABEL)
_MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Revocation:
    """A decoded revocation whose signature matches its embedded issuer certificate.

    ``after_seq`` None: all changes refused. ``issuer``: the parsed issuer
    certificate (its chain to a root is checked by the trust store).
    """

    device_key: bytes
    after_seq: int | None
    at_ms: int
    issuer: CertInfo
    blob: bytes

    def describe(self) -> str:
        """``revoked after seq 57`` / ``revoked (all changes)``."""
        if self.after_seq is None:
            return "revoked (all changes)"
        return f"revoked after seq {self.after_seq}"


def _pack(items: list[Any]) -> bytes:
    return msgpack.packb(items, use_bin_type=True)  # type: ignore[no-any-return]


def _unsigned(device_key: bytes, after_seq: int | None, at_ms: int, issuer_der: bytes) -> list[Any]:
    return [REVOCATION_TAG, REVOCATION_VERSION, device_key, after_seq, at_ms, issuer_der]


def make_revocation(
    issuer_key: AuthorityKey,
    issuer_cert_pem: bytes,
    device_public_key: bytes,
    after_seq: int | None,
    at_ms: int,
) -> bytes:
    """Sign a revocation of ``device_public_key`` (32 raw bytes); returns the blob.

    ``issuer_cert_pem``: the root or sub-authority certificate (first PEM block
    if a chain). ``after_seq``: changes with seq > after_seq are refused; None
    refuses all. ``at_ms``: issued time, ms since the epoch. Raises UsageError
    on bad arguments or a key that does not match the certificate.
    """
    if len(device_public_key) != PUBLIC_KEY_BYTES:
        raise UsageError("device public key must be 32 raw bytes")
    if after_seq is not None and not 0 <= after_seq <= _MAX_SEQ:
        raise UsageError(f"after_seq must be between 0 and {_MAX_SEQ}")
    if not 0 <= at_ms <= _MAX_SEQ:
        raise UsageError("at_ms must be a non-negative time in milliseconds")
    issuer = signed.signing_authority(
        issuer_key, issuer_cert_pem, root_only=False,
        refusal="the authority key does not match an authority certificate")
    return signed.sign_record(issuer_key, _unsigned(device_public_key, after_seq, at_ms,
                                                    issuer.der), _pack)


def _fields(blob: bytes) -> list[Any]:
    """Unpack and shape-check the seven fields; AuthorizationError if malformed."""
    items = signed.unpack_record(blob, "revocation")
    shape_ok = (
        isinstance(items, list)
        and len(items) == 7
        and items[0] == REVOCATION_TAG
        and all(isinstance(items[i], bytes) for i in (2, 5, 6))
        and (items[3] is None or (isinstance(items[3], int) and items[3] >= 0))
        and isinstance(items[4], int)
        and items[4] >= 0
    )
    if not shape_ok:
        raise AuthorizationError("malformed revocation: not a meshsync revocation record")
    if items[1] != REVOCATION_VERSION:
        raise AuthorizationError(f"unsupported revocation version {items[1]!r}")
    if len(items[2]) != PUBLIC_KEY_BYTES:
        raise AuthorizationError("malformed revocation: device key is not 32 bytes")
    if _pack(items) != blob:
        raise AuthorizationError("malformed revocation: not in canonical encoding")
    return list(items)


def decode_revocation(blob: bytes) -> Revocation:
    """Decode a revocation (raw or PEM-armoured) and check its signature.

    Checks the embedded issuer is an authority certificate whose key signed the
    record; does *not* check that issuer chains to a trusted root. Raises
    :class:`AuthorizationError` if malformed or the signature does not verify.
    """
    if len(blob) > MAX_CREDENTIAL_BYTES:
        raise AuthorizationError(f"credential larger than {MAX_CREDENTIAL_BYTES} bytes")
    blob = unarmor(blob)
    _tag, _version, device_key, after_seq, at_ms, issuer_der, signature = _fields(blob)
    issuer = signed.check_signed(
        issuer_der, signature, _pack(_unsigned(device_key, after_seq, at_ms, issuer_der)),
        what="revocation",
        failure=f"revocation of device {short_id(device_key)}: signature does not verify")
    return Revocation(device_key, after_seq, at_ms, issuer, blob)


def armor(blob: bytes) -> bytes:
    """PEM-armour a revocation blob for a file."""
    return signed.armor(blob, PEM_LABEL)


def unarmor(blob: bytes) -> bytes:
    """The raw blob inside PEM armour (or ``blob`` itself if not armoured)."""
    return signed.unarmor(blob, PEM_LABEL, "revocation")


def is_revocation(blob: bytes) -> bool:
    """True if ``blob`` looks like a revocation (armoured, or a 7-item msgpack array)."""
    return blob.lstrip().startswith(_PEM_BEGIN) or blob[:1] == b"\x97"
