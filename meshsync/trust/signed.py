"""Authority-signed records: the signing, checking and PEM armour shared by
revocations (:mod:`meshsync.trust.revocation`) and schema documents
(:mod:`meshsync.trust.schemadoc`).

Both are canonical msgpack arrays whose last two items are the DER certificate of the
signing authority and its ECDSA P-256 / SHA-256 signature (DER, RFC 6979
deterministic, so one record has one blob) over the encoding of the items before the
signature. Each module says what its items are, how it packs them and which authority
may sign; ``what`` names the record in error messages (``"revocation"``,
``"schema document"``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from meshsync.model.codec import describe_error
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.trust.issue import AuthorityKey
from meshsync.trust.profile import CertInfo, load_certificates, parse_certificate

ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def signing_authority(issuer_key: AuthorityKey, issuer_cert_pem: bytes, *,
                      root_only: bool, refusal: str) -> CertInfo:
    """The certificate (first PEM block of ``issuer_cert_pem``) of the authority whose
    key ``issuer_key`` is about to sign.

    Raises :class:`UsageError`: ``authority certificate: ...`` if it is no certificate,
    ``refusal`` if it is not an authority (``root_only``: not a root) or not for
    ``issuer_key``.
    """
    try:
        issuer = parse_certificate(load_certificates(issuer_cert_pem)[0])
    except AuthorizationError as exc:
        raise UsageError(f"authority certificate: {exc.detail}") from exc
    allowed = issuer.is_root if root_only else issuer.is_ca
    if not allowed or issuer.cert.public_key() != issuer_key.public_key():
        raise UsageError(refusal)
    return issuer


def sign_record(issuer_key: AuthorityKey, unsigned: list[Any],
                pack: Callable[[list[Any]], bytes]) -> bytes:
    """The blob of ``unsigned`` (the items before the signature, packed by ``pack``)
    followed by ``issuer_key``'s signature over ``pack(unsigned)``."""
    signature = issuer_key.sign(pack(unsigned), ECDSA)
    return pack([*unsigned, signature])


def unpack_record(blob: bytes, what: str) -> Any:
    """``blob`` decoded from msgpack (text as str, lists as lists, string map keys);
    :class:`AuthorizationError` ``malformed WHAT: ...`` if it is not msgpack."""
    try:
        return msgpack.unpackb(blob, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise AuthorizationError(f"malformed {what}: {describe_error(exc)}") from exc


def check_signed(issuer_der: bytes, signature: bytes, body: bytes, *, what: str,
                 failure: str) -> CertInfo:
    """The embedded issuer certificate ``issuer_der``, once it is shown to be an
    authority whose key made ``signature`` over ``body`` (whether it chains to a trusted
    root is the trust store's to check).

    Raises :class:`AuthorizationError`: the issuer is not one certificate, not an
    authority, or ``failure`` when the signature does not verify.
    """
    try:
        [issuer] = [parse_certificate(c) for c in load_certificates(issuer_der)]
    except (AuthorizationError, ValueError) as exc:
        raise AuthorizationError(f"malformed {what} issuer: {exc}") from exc
    public = issuer.cert.public_key()
    if not issuer.is_ca or not isinstance(public, ec.EllipticCurvePublicKey):
        raise AuthorizationError(f"{what} issuer is not an authority certificate")
    try:
        public.verify(signature, body, ECDSA)
    except InvalidSignature as exc:
        raise AuthorizationError(failure) from exc
    return issuer


def pem_markers(label: str) -> tuple[bytes, bytes]:
    """The ``-----BEGIN LABEL-----`` and ``-----END LABEL-----`` lines of ``label``."""
    return f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()


def armor(blob: bytes, label: str) -> bytes:
    """``blob`` PEM-armoured under ``label``, for a file (64 base64 characters a line)."""
    begin, end = pem_markers(label)
    text = base64.encodebytes(blob).replace(b"\n", b"")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"\n".join([begin, *lines, end]) + b"\n"


def unarmor(blob: bytes, label: str, what: str) -> bytes:
    """The raw blob inside PEM armour under ``label`` (or ``blob`` itself if not
    armoured); :class:`AuthorizationError` ``malformed WHAT: ...`` for armour that is not
    closed or not base64."""
    begin, end = pem_markers(label)
    stripped = blob.strip()
    if not stripped.startswith(begin):
        return blob
    if not stripped.endswith(end):
        raise AuthorizationError(f"malformed {what}: PEM armour not closed")
    inner = stripped[len(begin) : -len(end)]
    try:
        return base64.b64decode(b"".join(inner.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthorizationError(f"malformed {what}: {describe_error(exc)}") from exc
