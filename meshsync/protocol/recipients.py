"""Who a sealed bundle is for (docs/protocol.md, "Sealed bundles").

By default every device this node knows a verified certificate of (its own and those
learned with credentials: enrolment files, syncs, bundles) that is not revoked, whose
certificate is valid now, and that may hold every partition the bundle carries: its
share scope (:func:`meshsync.replica.share.default_share`: a phone its district, a
gateway its scope, central and admin everything) contains each of them. ``--to``
narrows that set by device id (or its first characters), certificate name, role or
scope (devices whose certificate scope lies inside it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from meshsync.model.errors import SealedError
from meshsync.model.identity import device_id
from meshsync.model.text import Msg
from meshsync.replica.node import Node, VersionVector
from meshsync.replica.share import default_share
from meshsync.store.base import in_prefix
from meshsync.trust.grant import NOT_REVOKED
from meshsync.trust.profile import ROLES, CertInfo


@dataclass(frozen=True)
class Recipient:
    """A device a bundle is sealed to."""

    key: bytes
    name: str
    role: str
    scope: str

    def to_json(self) -> dict[str, str]:
        """``device_id``, ``name``, ``role``, ``scope``."""
        return {"device_id": device_id(self.key), "name": self.name, "role": self.role,
                "scope": self.scope}


def bundle_partitions(node: Node, since: VersionVector | None = None) -> set[str]:
    """The partitions of the changes a bundle of ``node`` beyond ``since`` carries."""
    since = since or {}
    return {p for (author, p), seq in node.version_vector().items()
            if seq > since.get((author, p), 0)}


def may_hold(info: CertInfo, partitions: Iterable[str]) -> bool:
    """True if the device of ``info`` carries every one of ``partitions``."""
    share = default_share(info.role or "", info.scope or "")
    return all(in_prefix(p, share) for p in partitions)


def eligible(node: Node, partitions: set[str], now_s: int) -> list[Recipient]:
    """The devices allowed to hold ``partitions`` (see the module docs), by key."""
    devices = getattr(node.trust, "verified_devices", None)
    found: dict[bytes, Recipient] = {}
    for info, point in devices() if devices is not None else []:
        if point is not NOT_REVOKED or info.device_key is None or info.not_after < now_s \
                or info.not_before > now_s or not may_hold(info, partitions):
            continue
        found.setdefault(info.device_key, Recipient(info.device_key, info.name,
                                                    info.role or "", info.scope or ""))
    return list(found.values())


_SCOPE = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")


def _matches(r: Recipient, selector: str) -> bool:
    """True if ``selector`` names ``r``: its role, its certificate name, its device id
    (6 characters or more of it), or a scope holding its certificate scope."""
    if selector in ROLES:
        return r.role == selector
    if selector.casefold() == r.name.casefold():
        return True
    if len(selector) >= 6 and device_id(r.key).startswith(selector.upper()):
        return True
    return bool(_SCOPE.fullmatch(selector)) and r.scope != "" and in_prefix(r.scope, selector)


def choose(candidates: list[Recipient], to: list[str]) -> list[Recipient]:
    """``candidates`` narrowed by the ``--to`` selectors (all of them when empty).

    Raises :class:`SealedError` if the result is empty or a selector matches none.
    """
    if not to:
        chosen = candidates
    else:
        chosen = []
        for selector in to:
            hits = [r for r in candidates if _matches(r, selector)]
            if not hits:
                raise SealedError(Msg(
                    "--to %(who)s names no device allowed to hold what this bundle "
                    "carries (not known here, revoked, or outside its area)", who=selector))
            chosen += [r for r in hits if r not in chosen]
    if not chosen:
        raise SealedError(Msg(
            "no enrolled device known here may hold what this bundle carries, so it "
            "cannot be sealed; sync with the district laptop first, or use --clear on "
            "an unenrolled home"))
    return chosen


__all__ = ["Recipient", "bundle_partitions", "choose", "eligible", "may_hold"]
