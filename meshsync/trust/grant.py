"""One device certificate held by a trust store, and the checks made per change.

A :class:`Grant` caches what the X.509 verifier has established about one
certificate: the verified chains (with the window in which each whole chain is
valid) and the strictest revocation that applies to it. Checking a change is
then a handful of comparisons, so authorising 100,000 changes of one author
costs one chain verification.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from meshsync.trust.profile import ROLE_MAY_WRITE, CertInfo
from meshsync.trust.revocation import Revocation
from meshsync.trust.scope import scope_contains
from meshsync.trust.verify import Path


class NotRevoked(enum.Enum):
    """Type of :data:`NOT_REVOKED`, the "no revocation applies" marker."""

    NOT_REVOKED = "not revoked"


NOT_REVOKED = NotRevoked.NOT_REVOKED

#: ``NOT_REVOKED``; ``None`` = every change refused; ``n`` = changes with seq > n refused.
RevocationPoint = int | None | Literal[NotRevoked.NOT_REVOKED]


def stricter(a: RevocationPoint, b: RevocationPoint) -> RevocationPoint:
    """The stricter of two revocation points (None, "all", is the strictest)."""
    if a is NOT_REVOKED:
        return b
    if b is NOT_REVOKED:
        return a
    if a is None or b is None:
        return None
    return min(a, b)


def revocation_applies(revocation: Revocation, cert: CertInfo) -> bool:
    """True if ``revocation`` binds ``cert``.

    A root's revocation binds every certificate of the device; a
    sub-authority's only certificates whose scope lies inside its own scope
    (it may cut off devices in its district, not elsewhere).
    """
    if revocation.device_key != cert.device_key:
        return False
    issuer = revocation.issuer
    if issuer.is_root:
        return True
    return (
        issuer.scope is not None
        and cert.scope is not None
        and scope_contains(issuer.scope, cert.scope)
    )


def revocation_point(revocations: list[Revocation], cert: CertInfo) -> RevocationPoint:
    """The strictest point among ``revocations`` that apply to ``cert``."""
    point: RevocationPoint = NOT_REVOKED
    for revocation in revocations:
        if revocation_applies(revocation, cert):
            point = stricter(point, revocation.after_seq)
    return point


def describe_point(point: RevocationPoint) -> str:
    """Human text for a revocation point."""
    if point is NOT_REVOKED:
        return "not revoked"
    if point is None:
        return "revoked (all changes)"
    return f"revoked after seq {point}"


@dataclass
class Grant:
    """A verified device certificate.

    ``paths``: chains verified so far (at least one); ``revoked_after``: the
    strictest applicable revocation (recomputed by the store when one arrives).
    """

    info: CertInfo
    paths: list[Path] = field(default_factory=list)
    revoked_after: RevocationPoint = NOT_REVOKED

    def covers(self, at_s: int) -> bool:
        """True if a verified chain is valid at ``at_s`` (seconds since the epoch)."""
        return any(path.not_before <= at_s <= path.not_after for path in self.paths)

    def allows(self, partition: str, seq: int, at_s: int) -> bool:
        """Fast path: True if this certificate authorises the change."""
        return self.covers(at_s) and self.reason(partition, seq) is None

    def reason(self, partition: str, seq: int) -> str | None:
        """Why this certificate refuses a change (time aside), or None if it allows it.

        Checked in order: role may write, partition in scope, not revoked at ``seq``.
        """
        info = self.info
        role = info.role or ""
        if not ROLE_MAY_WRITE.get(role, False):
            return f"role {role!r} may not write"
        if info.scope is None or not scope_contains(info.scope, partition):
            return f"partition {partition!r} is outside certificate scope {info.scope!r}"
        point = self.revoked_after
        if point is None or (point is not NOT_REVOKED and seq > point):
            return f"{describe_point(point)} (change seq {seq})"
        return None

    @property
    def issuer_name(self) -> str:
        """Name of the authority that signed this certificate."""
        return self.paths[0].issuer.name if self.paths else ""
