"""The authority side: keys, certificate requests and certificates.

Profile: see :mod:`meshsync.trust.profile`. Every function takes the time it
needs (``now``: an aware :class:`~datetime.datetime`); none reads the clock.
``not_before`` is set :data:`NOT_BEFORE_MARGIN` before ``now`` so a phone whose
clock runs a little slow can use a certificate issued minutes ago, and a
certificate never outlives the certificate of its issuer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import DeviceKey, device_id
from meshsync.trust.profile import (
    DEFAULT_DELEGATED_ROLES,
    DELEGABLE_ROLES,
    ROLES,
    URI_DEVICE,
    URI_ISSUES,
    URI_ROLE,
    CertInfo,
    common_name,
    parse_blob,
    raw_ed25519,
    scope_uri,
)
from meshsync.trust.scope import scope_contains, validate_scope

#: How far before ``now`` a new certificate's validity starts.
NOT_BEFORE_MARGIN = timedelta(hours=1)
DEFAULT_AUTHORITY_DAYS = 3650
DEFAULT_SUB_AUTHORITY_DAYS = 1825
DEFAULT_DEVICE_DAYS = 365
#: Longest validity any certificate may be issued for (a century).
MAX_DAYS = 36500
_MAX_CN_CHARS = 64  # RFC 5280 ub-common-name

AuthorityKey = ec.EllipticCurvePrivateKey
#: :func:`load_csr`'s message for a file that is no certificate request at all.
NOT_A_CSR = "not a PEM certificate signing request"


def generate_authority_key() -> AuthorityKey:
    """A new ECDSA P-256 authority key (root or sub-authority)."""
    return ec.generate_private_key(ec.SECP256R1())


def authority_key_to_pem(key: AuthorityKey) -> bytes:
    """Unencrypted PKCS#8 PEM of an authority key (store it with mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_authority_key(data: bytes) -> AuthorityKey:
    """Load a PKCS#8 PEM authority key; UsageError if unreadable or not ECDSA P-256."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read authority key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError("authority key is not an ECDSA P-256 key")
    return key


def _name(name: str) -> x509.Name:
    if not name or len(name) > _MAX_CN_CHARS:
        raise UsageError(f"name must be 1 to {_MAX_CN_CHARS} characters: {name!r}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _check_now(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise UsageError("now must be a timezone-aware datetime")


def _window(now: datetime, days: int, cap: datetime | None) -> tuple[datetime, datetime]:
    """(not_before, not_after) for a certificate issued at ``now`` for ``days`` days."""
    _check_now(now)
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days must be 1 to {MAX_DAYS}, not {days}")
    not_after = now + timedelta(days=days)
    if cap is not None and not_after > cap:
        not_after = cap
    return now - NOT_BEFORE_MARGIN, not_after


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey | Ed25519PublicKey,
    issuer_public_key: ec.EllipticCurvePublicKey,
    *,
    window: tuple[datetime, datetime],
    path_length: int | None,
) -> x509.CertificateBuilder:
    """A builder with the parts every profile shares (``path_length`` None: not a CA)."""
    is_ca = path_length is not None
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(window[0])
        .not_valid_after(window[1])
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),
            critical=False,
        )
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_authority(
    name: str, now: datetime, days: int = DEFAULT_AUTHORITY_DAYS
) -> tuple[AuthorityKey, bytes]:
    """A new root: (ECDSA P-256 key, self-signed CA certificate PEM).

    ``name``: the subject CN (1-64 characters). ``now``: aware datetime.
    ``days``: validity. Raises UsageError on a bad argument.
    """
    key = generate_authority_key()
    subject = _name(name)
    builder = _builder(
        subject,
        subject,
        key.public_key(),
        key.public_key(),
        window=_window(now, days, None),
        path_length=1,
    )
    return key, _pem(builder.sign(key, hashes.SHA256()))


def _issuer(key: AuthorityKey, cert_pem: bytes, now: datetime) -> CertInfo:
    """The first certificate of ``cert_pem`` if ``key`` may issue with it at ``now``."""
    _check_now(now)
    try:
        info = parse_blob(cert_pem)[0]
    except AuthorizationError as exc:
        raise UsageError(f"authority certificate: {exc.detail}") from exc
    if not info.is_ca:
        raise UsageError(f"{info.describe()} is not an authority certificate")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError("authority keys are ECDSA P-256 (Ed25519 cannot issue, see profile)")
    public = info.cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public != key.public_key():
        raise UsageError("the authority key does not match the authority certificate")
    if not info.cert.not_valid_before_utc <= now <= info.cert.not_valid_after_utc:
        raise UsageError(f"{info.describe()} is not valid at {now.isoformat()}")
    return info


def issue_sub_authority(
    issuer_key: AuthorityKey,
    issuer_cert_pem: bytes,
    subject_public_key: ec.EllipticCurvePublicKey,
    *,
    name: str,
    scope: str,
    now: datetime,
    days: int = DEFAULT_SUB_AUTHORITY_DAYS,
    roles: tuple[str, ...] = DEFAULT_DELEGATED_ROLES,
) -> bytes:
    """A district sub-authority certificate (PEM) limited to ``scope``.

    Only the root may delegate (the sub-authority gets ``pathLenConstraint`` 0).
    ``subject_public_key``: the laptop's ECDSA P-256 authority key. ``roles``: the
    device roles it may issue, a non-empty subset of
    :data:`~meshsync.trust.profile.DELEGABLE_ROLES` (only the root issues central
    and admin), written as ``meshsync:issues/<role>`` URIs. Raises UsageError for
    a non-root issuer, a bad scope, name or role list, or a non-P-256 key.
    """
    issuer = _issuer(issuer_key, issuer_cert_pem, now)
    roles = check_delegated_roles(roles)
    if not issuer.is_root:
        raise UsageError("only the root authority can create a sub-authority")
    validate_scope(scope)
    if scope == "":
        raise UsageError("scope '' means every partition: a sub-authority needs a district "
                         "such as mimika/jila")
    if not (
        isinstance(subject_public_key, ec.EllipticCurvePublicKey)
        and subject_public_key.curve.name == "secp256r1"
    ):
        raise UsageError("a sub-authority key must be ECDSA P-256")
    builder = _builder(
        _name(name),
        issuer.cert.subject,
        subject_public_key,
        issuer_key.public_key(),
        window=_window(now, days, issuer.cert.not_valid_after_utc),
        path_length=0,
    ).add_extension(
        x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u)
             for u in (scope_uri(scope), *(URI_ISSUES + r for r in roles))]
        ),
        critical=False,
    )
    return _pem(builder.sign(issuer_key, hashes.SHA256()))


def check_delegated_roles(roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``roles`` as a sub-authority may hold them: non-empty, each in
    :data:`~meshsync.trust.profile.DELEGABLE_ROLES`, in that order, no repeats.

    Raises UsageError naming a role only the root may issue, or an unknown one.
    """
    for role in roles:
        if role not in DELEGABLE_ROLES:
            why = "only the root authority issues it" if role in ROLES else "unknown role"
            raise UsageError(f"a sub-authority cannot be allowed to issue {role!r} ({why}); "
                             f"it may issue {', '.join(DELEGABLE_ROLES)}")
    if not roles:
        raise UsageError("a sub-authority needs at least one role it may issue")
    return tuple(r for r in DELEGABLE_ROLES if r in roles)


def make_csr(device_key: DeviceKey, name: str) -> bytes:
    """A PEM certificate signing request for ``device_key`` with subject CN ``name``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(name))
    request = builder.sign(device_key.private_key, None)
    return request.public_bytes(serialization.Encoding.PEM)


def make_authority_request(key: AuthorityKey, name: str) -> bytes:
    """A PEM signing request for a would-be sub-authority's ECDSA key."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(name))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_csr(csr: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER request and check its self-signature.

    Raises UsageError if it cannot be parsed (:data:`NOT_A_CSR` if it does not
    even look like one) or its signature does not verify.
    """
    try:
        if csr.lstrip().startswith(b"-----BEGIN"):
            request = x509.load_pem_x509_csr(csr)
        else:
            request = x509.load_der_x509_csr(csr)
        valid = request.is_signature_valid
    except ValueError as exc:
        if b"-----BEGIN CERTIFICATE REQUEST-----" in csr:
            raise UsageError("malformed certificate request") from exc
        raise UsageError(NOT_A_CSR) from exc
    if not valid:
        raise UsageError("certificate request signature does not verify")
    return request


def issue_device_certificate(
    issuer_key: AuthorityKey,
    issuer_cert_pem: bytes,
    csr_pem: bytes,
    *,
    role: str,
    scope: str,
    now: datetime,
    days: int = DEFAULT_DEVICE_DAYS,
) -> bytes:
    """A device certificate (PEM, leaf only) for the Ed25519 key in ``csr_pem``.

    ``role`` in :data:`ROLES` and among the roles the issuer may issue (the root
    every role; a sub-authority those of its delegation, never central or admin);
    ``scope`` a partition prefix that must lie inside the issuer's scope when the
    issuer is a sub-authority. Raises UsageError (bad request signature,
    non-Ed25519 key, unknown role or one the issuer may not issue, scope outside
    the issuer's, issuer expired or key mismatch).
    """
    issuer = _issuer(issuer_key, issuer_cert_pem, now)
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if role not in issuer.may_issue:
        only_root = " (only the root authority issues central and admin)" * (
            role not in DELEGABLE_ROLES)
        raise UsageError(f"{issuer.describe()} may not issue role {role!r}{only_root}; "
                         f"it may issue {', '.join(issuer.may_issue)}")
    validate_scope(scope)
    if issuer.scope is not None and not scope_contains(issuer.scope, scope):
        raise UsageError(f"scope {scope!r} is outside {issuer.describe()}: it cannot issue there")
    request = load_csr(csr_pem)
    public = request.public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise UsageError("a device certificate request must hold an Ed25519 key")
    uris = [URI_DEVICE + device_id(raw_ed25519(public)), URI_ROLE + role, scope_uri(scope)]
    builder = (
        _builder(
            _name(common_name(request.subject)),
            issuer.cert.subject,
            public,
            issuer_key.public_key(),
            window=_window(now, days, issuer.cert.not_valid_after_utc),
            path_length=None,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    )
    return _pem(builder.sign(issuer_key, hashes.SHA256()))
