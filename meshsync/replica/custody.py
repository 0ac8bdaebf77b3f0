"""Custody on one node: accept receipts, issue its own, and say what is safe where.

Used by the sync session (receipts travel with credentials), the daemon (gateways
and central issue receipts) and ``meshsync status`` (an officer sees, for each of
her own feeds, how far the gateway and central hold it).
"""

from __future__ import annotations

from typing import Any

from meshsync.model.errors import AuthorizationError, DecodeError
from meshsync.model.identity import device_id
from meshsync.replica.node import Node
from meshsync.replica.receipt import Receipt, decode_receipt, make_receipt
from meshsync.store.base import in_prefix

ISSUER_ROLES = ("gateway", "central")


def issuer_role(node: Node, issuer: bytes) -> str | None:
    """The certificate role of ``issuer`` as this node's trust store knows it."""
    if issuer == node.key.public_key:
        return getattr(node, "role", None)
    info = getattr(node.trust, "device_info", None)
    if info is None:
        return None
    roles = [row.get("role") for row in info(issuer) if row.get("status") == "verified"]
    roles = [r for r in roles if r]
    return roles[0] if roles else None


def add_receipt(node: Node, blob: bytes) -> bool:
    """Verify and keep a receipt (inside the caller's transaction). True if new.

    Raises :class:`DecodeError`/:class:`~meshsync.model.errors.SignatureError` for a bad
    blob and :class:`AuthorizationError` if an enrolled node does not know the issuer
    as a gateway or central device.
    """
    receipt = decode_receipt(blob)
    if not _trust_is_open(node):
        role = issuer_role(node, receipt.issuer)
        if role not in ISSUER_ROLES:
            raise AuthorizationError(
                f"receipt from {device_id(receipt.issuer)[:8]}, which is not a known "
                f"gateway or central device (role {role})")
    return node.store.put_receipt(receipt.issuer, receipt.scope, receipt.at_ms, blob)


def _trust_is_open(node: Node) -> bool:
    return getattr(node.trust, "device_info", None) is None


def issue_receipt(node: Node, scope: str) -> bytes:
    """Sign and keep this node's receipt for ``scope`` (inside a transaction)."""
    vv = {feed: seq for feed, seq in node.version_vector().items() if in_prefix(feed[1], scope)}
    now = node.now_ms()
    blob = make_receipt(node.key, scope, now, vv)
    node.store.put_receipt(node.key.public_key, scope, now, blob)
    return blob


def held_receipts(node: Node) -> list[Receipt]:
    """Every receipt this node holds, verified (unreadable ones are skipped)."""
    out = []
    for blob in node.store.receipts():
        try:
            out.append(decode_receipt(blob))
        except DecodeError:
            continue
    return out


def custody(node: Node) -> dict[str, Any]:
    """For each of this device's own feeds: seq held locally, at a gateway, at central.

    ``gateway``/``central`` are the highest seq any receipt from an issuer of that
    role covers (0 if none); ``safe_at_central`` is True when central holds it all.
    """
    receipts = [(issuer_role(node, r.issuer), r) for r in held_receipts(node)]
    feeds = []
    for feed, seq in sorted(node.version_vector().items()):
        if feed[0] != node.key.public_key:
            continue
        held = {role: max((r.covers(feed) for rr, r in receipts if rr == role), default=0)
                for role in ISSUER_ROLES}
        feeds.append({"partition": feed[1], "local": seq, "gateway": held["gateway"],
                      "central": held["central"], "safe_at_central": held["central"] >= seq})
    return {
        "feeds": feeds,
        "receipts": [{"issuer": device_id(r.issuer), "role": role, "scope": r.scope,
                      "at_ms": r.at_ms, "feeds": len(r.vv)} for role, r in receipts],
    }
