"""Who may revoke whom (``meshsync authority revoke``): checked before anything is
signed or stored.

* A **sub-authority** may revoke only a device with a certificate inside its own
  scope (verifiers ignore its revocation of any other: see
  :func:`meshsync.trust.grant.revocation_applies`). It must see that certificate: in
  its trust store (after a sync) or given by the operator (the device's device.crt).
* A revocation that changes nothing (the device is already revoked at the same or a
  stricter point) is refused; a stricter one is accepted.

The root may revoke any device, known here or not.
"""

from __future__ import annotations

from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, short_id
from meshsync.trust.grant import NOT_REVOKED, describe_point, stricter
from meshsync.trust.profile import CertInfo
from meshsync.trust.scope import scope_contains
from meshsync.trust.store import TrustStore

#: Largest seq a revocation can name (msgpack int64).
MAX_AFTER_SEQ = 2**63 - 1


def sub_scope(authority: CertInfo) -> str | None:
    """The scope a revoking authority is limited to: None for the root, else its
    sub-authority certificate's scope ("" is every partition)."""
    return None if authority.is_root else authority.scope or ""


def _outside(scope: str, scopes: list[str]) -> str:
    shown = ", ".join(repr(s) for s in dict.fromkeys(scopes))
    return (f"its certificate scope {shown} is outside this sub-authority's scope {scope!r}: "
            "only the root authority (or the sub-authority of that district) can revoke it")


def check_given_certificate(authority: CertInfo, device: bytes, given: list[CertInfo],
                            name: str) -> None:
    """Check the certificate chain ``given`` for ``device`` (from the file ``name``,
    leaf first; empty if none was given) before it is stored.

    Raises :class:`UsageError` if it is another device's, or if ``authority`` is a
    sub-authority and its scope does not contain the certificate's.
    """
    if not given:
        return
    if given[0].device_key != device:
        other = device_id(given[0].device_key) if given[0].device_key else given[0].describe()
        raise UsageError(f"{name} is for {other}, not device {device_id(device)}")
    scope = sub_scope(authority)
    if scope is not None and not scope_contains(scope, given[0].scope or ""):
        raise UsageError(f"cannot revoke device {short_id(device)}: "
                         f"{_outside(scope, [given[0].scope or ''])}")


def check_revocable(trust: TrustStore, authority: CertInfo, device: bytes,
                    after_seq: int | None) -> None:
    """Check that ``authority`` may revoke ``device`` after ``after_seq`` (None: every
    change), given what ``trust`` knows (the given certificate already added).

    Raises :class:`UsageError` (one line) if a sub-authority holds no verified
    certificate of the device, or none inside its scope, or if the device is already
    revoked at the same or a stricter point (the revocation would change nothing).
    """
    short = short_id(device)
    scope = sub_scope(authority)
    if scope is not None:
        scopes = [r["scope"] for r in trust.device_info(device) if r["status"] == "verified"]
        if not scopes:
            raise UsageError(
                f"cannot revoke device {short}: this home holds no certificate of it, so "
                f"it cannot tell it is inside its scope {scope!r}; sync first or give "
                "--cert DEVICE.crt")
        if not any(scope_contains(scope, s) for s in scopes):
            raise UsageError(f"cannot revoke device {short}: {_outside(scope, scopes)}")
    current = trust.revocation_for(device)
    if current is not NOT_REVOKED and stricter(current, after_seq) == current:
        asked = "all changes" if after_seq is None else f"--after-seq {after_seq}"
        raise UsageError(f"device {short} is already {describe_point(current)}: a "
                         f"revocation of {asked} would change nothing; nothing stored")
