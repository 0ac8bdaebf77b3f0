"""Identity and trust (docs/architecture.md §6): certificates, revocations, the trust store.

Authority root → optional district sub-authority → device certificate, all
X.509 v3 built and verified with ``cryptography`` (profile in
:mod:`meshsync.trust.profile`). Revocations are signed records that travel like
any other data (:mod:`meshsync.trust.revocation`); a key rotation is a new
certificate plus a revocation of the old key (:mod:`meshsync.trust.rotation`).
:class:`TrustStore` is what one device knows and decides with. Nothing in this
package reads the clock.
"""

from __future__ import annotations

from meshsync.trust.grant import NOT_REVOKED, NotRevoked, RevocationPoint
from meshsync.trust.issue import (
    DEFAULT_AUTHORITY_DAYS,
    DEFAULT_DEVICE_DAYS,
    DEFAULT_SUB_AUTHORITY_DAYS,
    MAX_DAYS,
    NOT_A_CSR,
    NOT_BEFORE_MARGIN,
    AuthorityKey,
    authority_key_to_pem,
    create_authority,
    generate_authority_key,
    issue_device_certificate,
    issue_sub_authority,
    load_authority_key,
    load_csr,
    make_authority_request,
    make_csr,
)
from meshsync.trust.profile import (
    MAX_CREDENTIAL_BYTES,
    ROLE_MAY_WRITE,
    ROLES,
    CertInfo,
    load_certificates,
    parse_blob,
    parse_certificate,
)
from meshsync.trust.revocation import (
    Revocation,
    armor,
    decode_revocation,
    make_revocation,
    unarmor,
)
from meshsync.trust.rotation import (
    Rotation,
    carried_certificate,
    issue_rotation,
    rotation_file,
    split_credentials,
)
from meshsync.trust.scope import scope_contains, validate_scope
from meshsync.trust.store import TrustStore

__all__ = [
    "DEFAULT_AUTHORITY_DAYS",
    "DEFAULT_DEVICE_DAYS",
    "DEFAULT_SUB_AUTHORITY_DAYS",
    "MAX_CREDENTIAL_BYTES",
    "MAX_DAYS",
    "NOT_A_CSR",
    "NOT_BEFORE_MARGIN",
    "NOT_REVOKED",
    "ROLES",
    "ROLE_MAY_WRITE",
    "AuthorityKey",
    "CertInfo",
    "NotRevoked",
    "Revocation",
    "RevocationPoint",
    "Rotation",
    "TrustStore",
    "armor",
    "authority_key_to_pem",
    "carried_certificate",
    "create_authority",
    "decode_revocation",
    "generate_authority_key",
    "issue_device_certificate",
    "issue_rotation",
    "issue_sub_authority",
    "load_authority_key",
    "load_certificates",
    "load_csr",
    "make_authority_request",
    "make_csr",
    "make_revocation",
    "parse_blob",
    "parse_certificate",
    "rotation_file",
    "scope_contains",
    "split_credentials",
    "unarmor",
    "validate_scope",
]
