"""Identity and trust (docs/architecture.md §6): certificates, revocations, the trust store.

Authority root → optional district sub-authority → device certificate, all
X.509 v3 built and verified with ``cryptography`` (profile in
:mod:`meshsync.trust.profile`). Revocations are signed records that travel like
any other data (:mod:`meshsync.trust.revocation`); a key rotation is a new
certificate plus a revocation of the old key (:mod:`meshsync.trust.rotation`).
:class:`TrustStore` is what one device knows and decides with. Nothing in this
package reads the clock. The names below load on first use (PEP 562): a command
that needs no certificate never imports ``cryptography.x509``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module of this package that defines it.
_EXPORTS: dict[str, str] = {
    "AuthorityKey": "meshsync.trust.issue",
    "CertInfo": "meshsync.trust.profile",
    "DEFAULT_AUTHORITY_DAYS": "meshsync.trust.issue",
    "DEFAULT_DEVICE_DAYS": "meshsync.trust.issue",
    "DEFAULT_SUB_AUTHORITY_DAYS": "meshsync.trust.issue",
    "MAX_CREDENTIAL_BYTES": "meshsync.trust.profile",
    "MAX_DAYS": "meshsync.trust.issue",
    "NOT_A_CSR": "meshsync.trust.issue",
    "NOT_BEFORE_MARGIN": "meshsync.trust.issue",
    "NOT_REVOKED": "meshsync.trust.grant",
    "NotRevoked": "meshsync.trust.grant",
    "ROLES": "meshsync.trust.profile",
    "ROLE_MAY_WRITE": "meshsync.trust.profile",
    "Revocation": "meshsync.trust.revocation",
    "RevocationPoint": "meshsync.trust.grant",
    "Rotation": "meshsync.trust.rotation",
    "TrustStore": "meshsync.trust.store",
    "armor": "meshsync.trust.revocation",
    "authority_key_to_pem": "meshsync.trust.issue",
    "carried_certificate": "meshsync.trust.rotation",
    "create_authority": "meshsync.trust.issue",
    "decode_revocation": "meshsync.trust.revocation",
    "generate_authority_key": "meshsync.trust.issue",
    "issue_device_certificate": "meshsync.trust.issue",
    "issue_rotation": "meshsync.trust.rotation",
    "issue_sub_authority": "meshsync.trust.issue",
    "load_authority_key": "meshsync.trust.issue",
    "load_certificates": "meshsync.trust.profile",
    "load_csr": "meshsync.trust.issue",
    "make_authority_request": "meshsync.trust.issue",
    "make_csr": "meshsync.trust.issue",
    "make_revocation": "meshsync.trust.revocation",
    "parse_blob": "meshsync.trust.profile",
    "parse_certificate": "meshsync.trust.profile",
    "rotation_file": "meshsync.trust.rotation",
    "scope_contains": "meshsync.trust.scope",
    "split_credentials": "meshsync.trust.rotation",
    "unarmor": "meshsync.trust.revocation",
    "validate_scope": "meshsync.trust.scope",
}


def __getattr__(name: str) -> Any:
    """Load ``name`` from its module on first use; AttributeError if it is not exported."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads them
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
