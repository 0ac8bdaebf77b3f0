"""Custody on one node: accept receipts, issue its own, and say what is safe where.

Used by the sync session (receipts travel with credentials), the daemon (gateways
and central issue receipts) and ``meshsync status`` (an officer sees, for each of
her own feeds, how far the gateway and central hold it).
"""

from __future__ import annotations

import logging
from typing import Any

from meshsync.model.change import FeedId
from meshsync.model.errors import AuthorizationError, DecodeError
from meshsync.model.identity import device_id
from meshsync.replica.node import Node
from meshsync.replica.receipt import Receipt, decode_receipt, head_check, make_receipt
from meshsync.replica.refusals import edits_of, issued_refusals, refused_own, refused_seqs
from meshsync.store.base import in_prefix
from meshsync.trust.proven import META_KEY, decode_meta, encode_meta

ISSUER_ROLES = ("gateway", "central")

log = logging.getLogger("meshsync.custody")


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


def ignored_reason(node: Node, issuer: bytes, role: str | None) -> str | None:
    """Why a receipt of ``issuer`` (whose verified role is ``role``) does not count for
    custody, or None if it does: its issuer must hold a verified certificate of role
    gateway or central, from an authority that may issue that role (docs/architecture.md
    §6). A refused certificate's reason (e.g. a sub-authority minting ``central``) is
    quoted."""
    if role in ISSUER_ROLES or _trust_is_open(node):
        return None
    who = device_id(issuer)[:8]
    rows: list[dict[str, Any]] = getattr(node.trust, "device_info", lambda _k: [])(issuer)
    refused = [str(row.get("reason")) for row in rows if row.get("status") == "rejected"]
    if refused:
        return f"receipt from {who} ignored: its certificate was refused: {'; '.join(refused)}"
    return (f"receipt from {who} ignored: it is not a known gateway or central device "
            f"(role {role})")


def add_receipt(node: Node, blob: bytes) -> bool:
    """Verify and keep a receipt (inside the caller's transaction). True if new.

    Raises :class:`DecodeError`/:class:`~meshsync.model.errors.SignatureError` for a bad
    blob and :class:`AuthorizationError` if an enrolled node does not know the issuer
    as a gateway or central device whose chain permits that role (the reason says why,
    see :func:`ignored_reason`). A kept receipt's signing time teaches the trust store a
    lower bound of the current time (:func:`learn_receipt_time`).
    """
    receipt = decode_receipt(blob)
    if not _trust_is_open(node):
        reason = ignored_reason(node, receipt.issuer, issuer_role(node, receipt.issuer))
        if reason is not None:
            raise AuthorizationError(reason)
    new = node.store.put_receipt(receipt.issuer, receipt.scope, receipt.at_ms, blob)
    learn_receipt_time(node, receipt)
    return new


def learn_receipt_time(node: Node, receipt: Receipt) -> None:
    """Tell the trust store (if it learns times: ``note_signed_time``) that a gateway or
    central signed ``receipt`` at ``receipt.at_ms``; it keeps the newest such time that
    lies inside the issuer's certificate validity as a proven lower bound of the time,
    also in the store's meta (inside the caller's transaction)."""
    note = getattr(node.trust, "note_signed_time", None)
    if note is None or receipt.issuer == node.key.public_key:
        return
    if note(receipt.issuer, receipt.at_ms):
        proven = node.trust.proven_ms  # type: ignore[attr-defined]
        if proven > decode_meta(node.store.get_meta(META_KEY)):
            node.store.set_meta(META_KEY, encode_meta(proven))


def _trust_is_open(node: Node) -> bool:
    return getattr(node.trust, "device_info", None) is None


def issue_receipt(node: Node, scope: str) -> bytes:
    """Sign and keep this node's receipt for ``scope`` (inside a transaction): its
    version vector over ``scope`` with the head check of each feed (receipt version 3)
    and the changes in ``scope`` it refused
    (:func:`meshsync.replica.refusals.issued_refusals`), signed together."""
    infos = [f for f in node.store.feeds() if f.head_seq > 0 and in_prefix(f.partition, scope)]
    vv = {f.feed: f.head_seq for f in infos}
    checks = {f.feed: head_check(f.head_hash) for f in infos}
    now = node.now_ms()
    blob = make_receipt(node.key, scope, now, vv, issued_refusals(node, scope), checks)
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
    """For each of this device's own feeds: changes held locally, at a gateway, at
    central, and the changes refused there.

    ``gateway``/``central`` count the changes up to the highest seq any receipt from
    an issuer of that role verifiably covers (0 if none), less those that role refused
    (``refused``: :func:`meshsync.replica.refusals.refused_own`, each with its edits,
    stage and reason); ``safe_at_central`` is True when central holds the whole feed and
    refused none of it. A receipt covers seq N of a feed only if its head check (receipt
    version 3) is that of this device's own change at seq N; else the issuer holds
    another change there (a fork: this device was restored from an older backup and
    wrote that seq again), or more than this device holds: the receipt counts nothing
    for that feed and ``refused`` gets an entry of stage ``fork`` saying so. A receipt
    of version 1 or 2 (no checks) counts nothing either (``unverified`` in its row of
    ``receipts``), its refusals still shown. A held receipt whose issuer is not (or no
    longer) a verified gateway or central device counts for nothing, its refusals
    included: its row in ``receipts`` says why (``ignored``), and the reason is logged.
    """
    receipts = [(issuer_role(node, r.issuer), r) for r in held_receipts(node)]
    rows = [_receipt_row(node, role, r) for role, r in receipts]
    counted = [(str(role), r) for (role, r), row in zip(receipts, rows, strict=True)
               if role in ISSUER_ROLES and "ignored" not in row]
    own = sorted(f for f in node.version_vector().items() if f[0][0] == node.key.public_key)
    held = {feed: [(role, held_by(node, feed, role, r)) for role, r in counted]
            for feed, _seq in own}
    forks = [fork for pairs in held.values() for _role, (_n, fork) in pairs if fork]
    refused = _merge(refused_own(node, counted), forks)
    feeds = [_feed_row(feed, seq, held[feed], refused) for feed, seq in own]
    return {"feeds": feeds, "receipts": rows, "refused": refused}


def held_by(node: Node, feed: FeedId, role: str, receipt: Receipt
            ) -> tuple[int, dict[str, Any] | None]:
    """The seq of this device's own ``feed`` that ``receipt`` (from an issuer of
    ``role``) verifiably holds, and a refusal entry of stage ``fork`` (as in
    :func:`meshsync.replica.refusals.refused_own`) when its head check names another
    change than this device's at that seq, or a seq beyond this device's head.
    Unverified receipts (versions 1 and 2) hold 0, with no entry."""
    seq, check = receipt.covers(feed), receipt.check_of(feed)
    if seq == 0 or check is None:
        return 0, None
    mine = node.store.change_at(feed, seq)
    if mine is not None and head_check(mine.hash) == check:
        return seq, None
    if mine is None:
        reason = (f"{role} holds seq {seq} of this feed, beyond this device's head: "
                  "changes this device no longer has (was it restored from an older "
                  "backup?); what it writes at those seqs is a fork")
    else:
        reason = (f"{role} holds another change at seq {seq} (check {check.hex()}, this "
                  f"device's {head_check(mine.hash).hex()}): this device's feed forked "
                  "(restored from an older backup?)")
    return 0, {"partition": feed[1], "seq": seq, "at": role,
               "issuer": device_id(receipt.issuer), "stage": "fork", "reason": reason,
               "edits": edits_of(mine.body, mine.sig, mine.hash) if mine else []}


def _merge(refused: list[dict[str, Any]], forks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``refused`` and the fork entries, one per (partition, seq, role, stage), sorted."""
    out: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for entry in refused + forks:
        out.setdefault((entry["partition"], entry["seq"], entry["at"], entry["stage"]), entry)
    return [out[k] for k in sorted(out)]


def _feed_row(feed: FeedId, seq: int, held: list[tuple[str, tuple[int, Any]]],
              refused: list[dict[str, Any]]) -> dict[str, Any]:
    """One feed's custody row (see :func:`custody`)."""
    row: dict[str, Any] = {"partition": feed[1], "local": seq}
    for role in ISSUER_ROLES:
        covers = max((n for rr, (n, _fork) in held if rr == role), default=0)
        seqs = refused_seqs(refused, feed[1], role)
        row[role] = covers - len({s for s in seqs if s <= covers})
        row[f"{role}_refused"] = len(seqs)
    row["safe_at_central"] = row["central"] >= seq and not row["central_refused"]
    return row


def _receipt_row(node: Node, role: str | None, receipt: Receipt) -> dict[str, Any]:
    row: dict[str, Any] = {"issuer": device_id(receipt.issuer), "role": role,
                           "scope": receipt.scope, "at_ms": receipt.at_ms,
                           "feeds": len(receipt.vv), "refusals": len(receipt.refused)}
    if not receipt.checked:
        row["unverified"] = ("receipt version 1 or 2 has no head checks: the seqs it "
                             "lists are not counted")
    reason = ignored_reason(node, receipt.issuer, role)
    if reason is not None:
        log.warning("%s", reason)
        row["ignored"] = reason
    return row
