"""The meshsync certificate profile: what a certificate says and how it is parsed.

Three kinds of X.509 v3 certificate (docs/architecture.md §6):

* **root** (the authority, KPU Kabupaten): self-signed, ``basicConstraints``
  CA with ``pathLenConstraint`` 1, ``keyUsage`` keyCertSign + cRLSign. No scope
  (it covers everything).
* **sub-authority** (a district laptop): CA issued by the root with
  ``pathLenConstraint`` 0, so it can certify devices but no further authority;
  its scope is one ``subjectAltName`` URI ``meshsync:scope/<scope>``, and the
  device roles it may issue are ``meshsync:issues/<role>`` URIs, one per role
  (:data:`DELEGABLE_ROLES` at most; none listed, as in certificates made before
  the list existed, means :data:`DEFAULT_DELEGATED_ROLES`). Only the root issues
  ``central`` and ``admin`` (docs/architecture.md §6).
* **device**: ``basicConstraints`` CA false, ``keyUsage`` digitalSignature
  (critical), ``extendedKeyUsage`` clientAuth + serverAuth (usable for mutual
  TLS 1.3 with Python's :mod:`ssl`), and ``subjectAltName`` URIs::

      meshsync:device/<device id>      the Ed25519 key, as meshsync.model.identity.device_id
      meshsync:role/<role>             pantarlih | gateway | central | admin
      meshsync:scope/<scope>           percent-encoded partition prefix ("" = all)

  The subject is ``CN=<name>``; names need not be unique (a replacement phone
  for the same officer gets a new key under the same name).

Authority keys (root and sub-authority) are **ECDSA P-256** with SHA-256
signatures; device keys are **Ed25519** (the key that also signs changes).
This is the profile adaptation ``cryptography.x509.verification`` needs: its
WebPKI policy refuses Ed25519 as the key of any issuing certificate (there is
no API to allow it, pyca/cryptography#13391) but accepts an Ed25519 leaf.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from meshsync.model.errors import AuthorizationError
from meshsync.model.identity import device_id

#: Device roles a certificate may carry.
ROLES = ("pantarlih", "gateway", "central", "admin")

#: Roles a sub-authority may be allowed to issue: only the root issues central and admin.
DELEGABLE_ROLES = ("pantarlih", "gateway")
#: Roles of a sub-authority whose certificate lists none (the default of a delegation).
DEFAULT_DELEGATED_ROLES = DELEGABLE_ROLES

#: Which roles may write changes (in their scope). All may, for now.
ROLE_MAY_WRITE: dict[str, bool] = dict.fromkeys(ROLES, True)

#: Largest credential blob (certificate bundle or revocation) accepted, bytes.
MAX_CREDENTIAL_BYTES = 64 * 1024

URI_DEVICE = "meshsync:device/"
URI_ROLE = "meshsync:role/"
URI_SCOPE = "meshsync:scope/"
URI_ISSUES = "meshsync:issues/"

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def scope_uri(scope: str) -> str:
    """``meshsync:scope/<scope>`` with the scope percent-encoded (``/`` kept)."""
    return URI_SCOPE + quote(scope, safe="/")


def to_seconds(when: datetime) -> int:
    """Whole seconds since the Unix epoch of an aware datetime."""
    return int(when.timestamp())


def iso(seconds: int) -> str:
    """ISO 8601 UTC text (``2025-01-31T00:00:00Z``) of seconds since the epoch."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER encoding (32 bytes)."""
    return hashlib.sha256(der).digest()


@dataclass(frozen=True)
class CertInfo:
    """A parsed meshsync certificate. Times are whole seconds since the epoch.

    ``role`` and ``device_key`` (raw 32-byte Ed25519) are set for device
    certificates only; ``scope`` is ``None`` only for a root. ``may_issue``: the
    device roles an authority may certify (every role for a root, the delegated
    list for a sub-authority, empty for a device).
    """

    cert: x509.Certificate
    der: bytes
    fingerprint: bytes
    name: str
    is_ca: bool
    is_root: bool
    scope: str | None
    role: str | None
    device_key: bytes | None
    not_before: int
    not_after: int
    may_issue: tuple[str, ...] = ()

    def describe(self) -> str:
        """Short human label: ``sub-authority 'PPK Jila' (mimika/jila)`` etc."""
        if self.is_root:
            return f"authority {self.name!r}"
        kind = "sub-authority" if self.is_ca else "certificate"
        return f"{kind} {self.name!r} (scope {self.scope!r})"

    def to_json(self, issuer: str) -> dict[str, str | None]:
        """The certificate as the CLI and the daemon's API show it: ``device_id`` (None
        for an authority), ``name``, ``role``, ``scope``, ``not_before`` and
        ``not_after`` (ISO 8601 UTC) and ``issuer`` (the issuer's name, given)."""
        return {
            "device_id": device_id(self.device_key) if self.device_key else None,
            "name": self.name,
            "role": self.role,
            "scope": self.scope,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "issuer": issuer,
        }


#: What ``cryptography`` may raise while (lazily) parsing a hostile certificate.
_PARSE_ERRORS = (
    ValueError,
    UnicodeError,
    UnsupportedAlgorithm,
    CryptographyDeprecationWarning,
    x509.DuplicateExtension,
    x509.InvalidVersion,
    x509.UnsupportedGeneralNameType,
)


def load_certificates(blob: bytes) -> list[x509.Certificate]:
    """Certificates in ``blob``: one DER certificate, or one or more PEM blocks.

    Raises :class:`AuthorizationError` ("malformed certificate: ...") otherwise,
    including for encodings ``cryptography`` only accepts with a deprecation
    warning (e.g. a non-positive serial number).
    """
    pem = blob.lstrip().startswith(_PEM_CERT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            if pem:
                return x509.load_pem_x509_certificates(blob)
            return [x509.load_der_x509_certificate(blob)]
    except _PARSE_ERRORS as exc:
        if pem:
            raise AuthorizationError(f"{NOT_PEM}: {_pem_reason(exc)}") from exc
        raise AuthorizationError(f"malformed certificate: {exc}") from exc


#: How :func:`load_certificates` starts its error for a PEM text it cannot read.
NOT_PEM = "not a valid PEM certificate file"


def _pem_reason(exc: Exception) -> str:
    """``cryptography``'s PEM error as one short clause: without its FAQ link, and its
    ``InvalidData(...)`` as "bad base64 (...)"."""
    text = re.sub(r"\s*See https?://\S+ for more details\.", "", str(exc)).strip()
    invalid = re.search(r"InvalidData\((.*?)\.?\)", text)
    if invalid:
        return f"bad base64 ({invalid.group(1)})"
    text = re.sub(r"^Unable to load PEM file\.\s*", "", text)
    return text or "unreadable"


def common_name(name: x509.Name) -> str:
    """The first CN of ``name``, else its RFC 4514 text."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if values:
        value = values[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string()


class _Bad(Exception):
    """A profile violation found while parsing (turned into AuthorizationError)."""


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def _one(uris: list[str], prefix: str) -> str | None:
    """The text after ``prefix`` in the single URI that has it; None if absent."""
    found = [u[len(prefix) :] for u in uris if u.startswith(prefix)]
    if len(found) > 1:
        raise _Bad(f"more than one {prefix} URI")
    return unquote(found[0], errors="strict") if found else None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as exc:
        raise _Bad("no basicConstraints") from exc
    return bc.value.ca


def raw_ed25519(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _device_fields(cert: x509.Certificate, uris: list[str]) -> tuple[bytes, str, str]:
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise _Bad("a device certificate must hold an Ed25519 key")
    raw = raw_ed25519(key)
    named = _one(uris, URI_DEVICE)
    if named is not None and named != device_id(raw):
        raise _Bad("its device URI does not match its public key")
    role = _one(uris, URI_ROLE)
    scope = _one(uris, URI_SCOPE)
    if role is None or scope is None:
        raise _Bad("a device certificate needs role and scope URIs")
    return raw, role, scope


def _delegated_roles(uris: list[str]) -> tuple[str, ...]:
    """The roles a sub-authority's ``meshsync:issues/`` URIs grant (default if none)."""
    listed = [unquote(u[len(URI_ISSUES):], errors="strict") for u in uris
              if u.startswith(URI_ISSUES)]
    if not listed:
        return DEFAULT_DELEGATED_ROLES
    for role in listed:
        if role not in DELEGABLE_ROLES:
            raise _Bad(f"a sub-authority may not issue role {role!r} (it may issue "
                       f"{', '.join(DELEGABLE_ROLES)}; only the root issues central and admin)")
    return tuple(r for r in DELEGABLE_ROLES if r in listed)


def _authority_fields(
    cert: x509.Certificate, uris: list[str], is_root: bool
) -> tuple[str | None, tuple[str, ...]]:
    """(scope, roles it may issue) of an authority certificate; root: (None, ROLES)."""
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        raise _Bad("an authority certificate must hold an ECDSA key")
    if is_root:
        return None, ROLES
    scope = _one(uris, URI_SCOPE)
    if scope is None:
        raise _Bad("a sub-authority certificate needs a scope URI")
    return scope, _delegated_roles(uris)


def _parse(cert: x509.Certificate, name: str) -> CertInfo:
    if cert.version != x509.Version.v3:
        raise _Bad("not an X.509 v3 certificate")
    uris = _uris(cert)
    is_ca = _is_ca(cert)
    is_root = is_ca and cert.issuer == cert.subject
    role: str | None = None
    raw: bytes | None = None
    may_issue: tuple[str, ...] = ()
    if is_ca:
        scope, may_issue = _authority_fields(cert, uris, is_root)
    else:
        raw, role, scope = _device_fields(cert, uris)
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertInfo(
        cert=cert,
        der=der,
        fingerprint=fingerprint(der),
        name=name,
        is_ca=is_ca,
        is_root=is_root,
        scope=scope,
        role=role,
        device_key=raw,
        not_before=to_seconds(cert.not_valid_before_utc),
        not_after=to_seconds(cert.not_valid_after_utc),
        may_issue=may_issue,
    )


def parse_certificate(cert: x509.Certificate) -> CertInfo:
    """Read the meshsync profile fields of ``cert``.

    Checks shape only (the chain is checked by :mod:`meshsync.trust.verify`).
    Raises :class:`AuthorizationError` if any part cannot be decoded or it is
    not a v3 certificate of one of the three kinds described in this module.
    """
    name = "?"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            name = common_name(cert.subject)
            _ = (cert.issuer, cert.signature_algorithm_oid, cert.serial_number)
            return _parse(cert, name)
    except (_Bad, *_PARSE_ERRORS) as exc:
        raise AuthorizationError(f"malformed certificate {name!r}: {exc}") from exc


def parse_blob(blob: bytes) -> list[CertInfo]:
    """Parse every certificate in a PEM/DER ``blob`` (see :func:`load_certificates`)."""
    if len(blob) > MAX_CREDENTIAL_BYTES:
        raise AuthorizationError(f"credential larger than {MAX_CREDENTIAL_BYTES} bytes")
    return [parse_certificate(c) for c in load_certificates(blob)]


def to_pem(certs: list[CertInfo]) -> bytes:
    """PEM text of ``certs`` in the given order (leaf first for a chain)."""
    return b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs)
