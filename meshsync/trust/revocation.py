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

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from meshsync.model.codec import describe_error
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import PUBLIC_KEY_BYTES, short_id
from meshsync.trust.issue import AuthorityKey
from meshsync.trust.profile import (
    MAX_CREDENTIAL_BYTES,
    CertInfo,
    load_certificates,
    parse_certificate,
)

REVOCATION_TAG = "meshsync/revocation"
REVOCATION_VERSION = 1
PEM_LABEL = "MESHSYNC REVOCATION"
_PEM_BEGIN = f"-----BEGIN {PEM_LABEL}-----".encode()
_PEM_END = f"-----END {PEM_LABEL}-----".encode()
_MAX_SEQ = 2**63 - 1
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


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
    try:
        issuer = parse_certificate(load_certificates(issuer_cert_pem)[0])
    except AuthorizationError as exc:
        raise UsageError(f"authority certificate: {exc.detail}") from exc
    if not issuer.is_ca or issuer.cert.public_key() != issuer_key.public_key():
        raise UsageError("the authority key does not match an authority certificate")
    unsigned = _unsigned(device_public_key, after_seq, at_ms, issuer.der)
    signature = issuer_key.sign(_pack(unsigned), _ECDSA)
    return _pack([*unsigned, signature])


def _fields(blob: bytes) -> list[Any]:
    """Unpack and shape-check the seven fields; AuthorizationError if malformed."""
    try:
        items: Any = msgpack.unpackb(blob, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise AuthorizationError(f"malformed revocation: {describe_error(exc)}") from exc
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
    try:
        [issuer] = [parse_certificate(c) for c in load_certificates(issuer_der)]
    except (AuthorizationError, ValueError) as exc:
        raise AuthorizationError(f"malformed revocation issuer: {exc}") from exc
    public = issuer.cert.public_key()
    if not issuer.is_ca or not isinstance(public, ec.EllipticCurvePublicKey):
        raise AuthorizationError("revocation issuer is not an authority certificate")
    try:
        body = _pack(_unsigned(device_key, after_seq, at_ms, issuer_der))
        public.verify(signature, body, _ECDSA)
    except InvalidSignature as exc:
        raise AuthorizationError(
            f"revocation of device {short_id(device_key)}: signature does not verify"
        ) from exc
    return Revocation(device_key, after_seq, at_ms, issuer, blob)


def armor(blob: bytes) -> bytes:
    """PEM-armour a revocation blob for a file."""
    text = base64.encodebytes(blob).replace(b"\n", b"")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"\n".join([_PEM_BEGIN, *lines, _PEM_END]) + b"\n"


def unarmor(blob: bytes) -> bytes:
    """The raw blob inside PEM armour (or ``blob`` itself if not armoured)."""
    stripped = blob.strip()
    if not stripped.startswith(_PEM_BEGIN):
        return blob
    if not stripped.endswith(_PEM_END):
        raise AuthorizationError("malformed revocation: PEM armour not closed")
    inner = stripped[len(_PEM_BEGIN) : -len(_PEM_END)]
    try:
        return base64.b64decode(b"".join(inner.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthorizationError(f"malformed revocation: {describe_error(exc)}") from exc


def is_revocation(blob: bytes) -> bool:
    """True if ``blob`` looks like a revocation (armoured, or a 7-item msgpack array)."""
    return blob.lstrip().startswith(_PEM_BEGIN) or blob[:1] == b"\x97"
