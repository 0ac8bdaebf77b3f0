"""Chain verification with ``cryptography.x509.verification``.

The library's verifier builds the path (root → optional sub-authority →
device), checks every signature, basicConstraints and path length, key usage
and the validity of every certificate at the given time. On top of it we add
what X.509 cannot say: a device's scope must lie inside the scope of the
sub-authority that issued it (:func:`check_scopes`), and its role must be one
its issuer may certify (:func:`check_roles`: only the root issues ``central``
and ``admin``; a sub-authority the roles its delegation lists).

Device leaves are checked with a custom extension policy (the WebPKI defaults
plus: extendedKeyUsage must list clientAuth *and* serverAuth, keyUsage must
allow digitalSignature), so every accepted certificate is usable for mutual
TLS in both directions. A sub-authority certificate checked on its own is
verified as a leaf under the WebPKI *CA* policy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from meshsync.model.errors import AuthorizationError
from meshsync.trust.profile import CertInfo, fingerprint, iso
from meshsync.trust.scope import scope_contains


def _check_eku(policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage) -> None:
    """Extension validator: a device must be usable as TLS client and server."""
    usages = set(eku)
    for needed in (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH):
        if needed not in usages:
            raise ValueError(f"extendedKeyUsage lacks {needed.dotted_string}")


def _check_key_usage(policy: Policy, cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    """Extension validator: a device key must be allowed to sign (TLS, changes)."""
    if not usage.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature")


DEVICE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _check_eku)
    .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _check_key_usage)
)
CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


@dataclass(frozen=True)
class Path:
    """A verified chain, leaf first and root last.

    ``not_before``/``not_after`` (seconds since the epoch, inclusive) bound the
    time when every certificate of the chain is valid.
    """

    chain: tuple[CertInfo, ...]
    not_before: int
    not_after: int

    @property
    def issuer(self) -> CertInfo:
        """The certificate that signed the leaf."""
        return self.chain[1] if len(self.chain) > 1 else self.chain[0]

    def covers(self, at_s: int) -> bool:
        """True if ``at_s`` (seconds) lies in the chain's common validity window."""
        return self.not_before <= at_s <= self.not_after


def check_scopes(chain: tuple[CertInfo, ...]) -> None:
    """Refuse a chain where a certificate's scope is outside its issuing sub-authority's.

    ``chain``: leaf first. Roots (scope None) cover everything. Raises
    :class:`AuthorizationError`.
    """
    for child, parent in itertools.pairwise(chain):
        if parent.scope is None or child.scope is None:
            continue
        if not scope_contains(parent.scope, child.scope):
            raise AuthorizationError(
                f"{child.describe()} was issued by {parent.describe()} outside its scope"
            )


def check_roles(chain: tuple[CertInfo, ...]) -> None:
    """Refuse a chain whose device role its issuing authority may not certify.

    ``chain``: leaf first. The issuer's ``may_issue`` (every role for a root, the
    delegated list for a sub-authority, see :mod:`meshsync.trust.profile`) must
    hold the leaf's role. X.509 has no such constraint (RFC 5280 §4.2.1.10 name
    constraints do not cover URIs' meaning), so it is checked here after the path
    is built. Raises :class:`AuthorizationError` naming both certificates.
    """
    if len(chain) < 2 or chain[0].role is None:
        return
    leaf, issuer = chain[0], chain[1]
    if leaf.role not in issuer.may_issue:
        raise AuthorizationError(
            f"{leaf.describe()} has role {leaf.role!r}, which {issuer.describe()} may not "
            f"issue (it may issue {', '.join(issuer.may_issue) or 'no role'})"
        )


def _check_window(cert: CertInfo, at_s: int) -> None:
    """Refuse, in plain words, a certificate outside its validity at ``at_s`` (RFC 5280
    §4.1.2.5: valid from notBefore to notAfter inclusive)."""
    if at_s > cert.not_after:
        raise AuthorizationError(
            f"{cert.describe()} expired at {iso(cert.not_after)} (checked at {iso(at_s)})")
    if at_s < cert.not_before:
        raise AuthorizationError(f"{cert.describe()} is not valid before "
                                 f"{iso(cert.not_before)} (checked at {iso(at_s)})")


class ChainVerifier:
    """Verifies chains against fixed trusted roots. Holds no clock.

    ``roots``: parsed root certificates (at least one; else every call fails).
    """

    def __init__(self, roots: list[CertInfo]) -> None:
        self._roots = roots
        self._store = Store([r.cert for r in roots]) if roots else None

    def _run(
        self, leaf: CertInfo, intermediates: list[CertInfo], at_s: int, ee: ExtensionPolicy
    ) -> Path:
        if self._store is None:
            raise AuthorizationError("no trusted authority installed")
        _check_window(leaf, at_s)
        builder = (
            PolicyBuilder()
            .store(self._store)
            .time(datetime.fromtimestamp(at_s, UTC))
            .extension_policies(ca_policy=CA_POLICY, ee_policy=ee)
        )
        try:
            verified = builder.build_client_verifier().verify(
                leaf.cert, [i.cert for i in intermediates]
            )
        except VerificationError as exc:
            raise AuthorizationError(
                f"{leaf.describe()} does not verify to a trusted root at {iso(at_s)}: {exc}"
            ) from exc
        known = {c.fingerprint: c for c in (leaf, *intermediates, *self._roots)}
        chain = tuple(known[fingerprint(c.public_bytes(Encoding.DER))] for c in verified.chain)
        return Path(
            chain=chain,
            not_before=max(c.not_before for c in chain),
            not_after=min(c.not_after for c in chain),
        )

    def device_path(self, leaf: CertInfo, intermediates: list[CertInfo], at_s: int) -> Path:
        """Verify a device certificate at ``at_s`` (seconds since the epoch).

        ``intermediates``: candidate sub-authority certificates (extra ones are
        ignored). Returns the verified :class:`Path`; raises
        :class:`AuthorizationError` if no valid chain to a trusted root exists
        then, a scope is outside its issuer's, or its issuer may not issue its role.
        """
        path = self._run(leaf, intermediates, at_s, DEVICE_POLICY)
        check_scopes(path.chain)
        check_roles(path.chain)
        return path

    def authority_path(self, authority: CertInfo, at_s: int) -> Path:
        """Verify a sub-authority certificate on its own (issued by a root) at ``at_s``."""
        return self._run(authority, [], at_s, CA_POLICY)
