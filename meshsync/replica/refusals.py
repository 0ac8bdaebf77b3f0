"""Refusals that travel back down with custody receipts (docs/architecture.md §8).

A gateway or central signs, in each receipt it issues, the changes in the receipt's
scope it refused (:class:`~meshsync.replica.receipt.Refused`): a change kept but invalid
under its collection's rules, a change refused by authorization (scope, revocation) or
the hash chain, a fork, a change quarantined after its author's revocation. An
officer's phone matches those against its own feeds and shows each refused edit
(collection, key, fields) with the stage and the reason, never as safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshsync.model.change import FeedId, Put, decode_stored
from meshsync.model.errors import DecodeError
from meshsync.model.identity import device_id
from meshsync.model.text import Msg
from meshsync.replica.node import Node
from meshsync.replica.receipt import MAX_REFUSALS, Receipt, Refused, refused_entry
from meshsync.store.base import in_prefix

#: Stages whose refused change the issuer keeps (so its version vector covers the seq):
#: they must be subtracted from what the receipt says the issuer holds.
KEPT_STAGES = ("validation", "fork", "revocation")
#: Refusals read from the issuer's log when it signs a receipt (newest first): each
#: costs the issuer a lookup or two, at the end of every session that brought changes.
LOG_WINDOW = 1024


def issued_refusals(node: Node, scope: str) -> list[Refused]:
    """The refusals ``node`` signs into its receipt for ``scope``: at most
    :data:`~meshsync.replica.receipt.MAX_REFUSALS`, the newest first chosen.

    Rules (the issuer's refusal log, ``Store.refusals``, and quarantine): a
    ``validation`` refusal while the change held at that seq is still invalid (with its
    hash); a ``fork`` always; any other stage only while the issuer does not hold that
    seq, and only the lowest such seq of each feed (the later ones of the feed could not
    chain behind it); every quarantined change in scope (stage ``revocation``, with its
    hash).
    """
    chosen: dict[tuple[FeedId, int], Refused] = {}
    for q in node.store.quarantined():
        if in_prefix(q.partition, scope):
            chosen[((q.author, q.partition), q.seq)] = refused_entry(
                q.author, q.partition, q.seq, q.hash, "revocation", q.reason)
    lowest: dict[FeedId, int] = {}
    heads: dict[FeedId, int] = {}
    for r in reversed(node.store.refusals(limit=LOG_WINDOW)):
        feed = (r.author, r.partition)
        if (feed, r.seq) in chosen or not in_prefix(r.partition, scope):
            continue
        entry = _still_refused(node, feed, r.seq, r.stage, r.reason, heads)
        if entry is None:
            continue
        if entry.stage not in KEPT_STAGES:
            if r.seq >= lowest.get(feed, r.seq + 1):
                continue
            chosen.pop((feed, lowest.get(feed, 0)), None)
            lowest[feed] = r.seq
        chosen[(feed, r.seq)] = entry
        if len(chosen) >= MAX_REFUSALS:
            break
    return list(chosen.values())


def _still_refused(node: Node, feed: FeedId, seq: int, stage: str, reason: str,
                   heads: dict[FeedId, int]) -> Refused | None:
    """The entry for a logged refusal that still holds, or None (see
    :func:`issued_refusals`); ``heads`` caches the head seq of each feed looked up."""
    if stage == "validation":
        held = node.store.change_at(feed, seq)
        if held is None or held.invalid is None:
            return None
        return refused_entry(feed[0], feed[1], seq, held.hash, stage, held.invalid)
    if stage != "fork":
        if feed not in heads:
            info = node.store.feed_head(feed)
            heads[feed] = info.head_seq if info else 0
        if heads[feed] >= seq:
            return None
    return refused_entry(feed[0], feed[1], seq, b"", stage, reason)


def refused_own(node: Node, receipts: Iterable[tuple[str, Receipt]]) -> list[dict[str, Any]]:
    """This device's own changes refused by the issuers of ``receipts`` (pairs of the
    issuer's verified role, ``gateway`` or ``central``, and the receipt), sorted by
    (partition, seq, role).

    Each is ``{"partition", "seq", "at": role, "issuer": device id, "stage", "reason",
    "edits": [{"collection", "key", "fields": [names], "deleted": bool}]}``. An entry
    naming a hash other than the change this device holds at that seq is about some
    other change and is left out; so is one of a seq this device does not hold.
    """
    own = node.key.public_key
    out: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for role, receipt in receipts:
        for r in receipt.refused:
            if r.author != own:
                continue
            held = node.store.change_at(r.feed, r.seq)
            if held is None or (r.hash and r.hash != held.hash):
                continue
            out.setdefault((r.partition, r.seq, role, r.stage), {
                "partition": r.partition, "seq": r.seq, "at": role,
                "issuer": device_id(receipt.issuer), "stage": r.stage, "reason": r.reason,
                "edits": edits_of(held.body, held.sig, held.hash)})
    return [out[k] for k in sorted(out)]


def edits_of(body: bytes, sig: bytes, digest: bytes) -> list[dict[str, Any]]:
    """The edits of a stored change, as :func:`refused_own` lists them (``[]`` if its
    body cannot be read)."""
    try:
        change = decode_stored(body, sig, digest)
    except DecodeError:
        return []
    return [{"collection": op.collection, "key": op.key,
             "fields": sorted(op.fields) if isinstance(op, Put) else [],
             "deleted": not isinstance(op, Put)} for op in change.ops]


def refused_seqs(refused: list[dict[str, Any]], partition: str, role: str) -> set[int]:
    """The seqs of ``partition`` (this device's feed) that ``role`` refused, from
    :func:`refused_own`'s list."""
    return {r["seq"] for r in refused if r["partition"] == partition and r["at"] == role}


def describe(entry: dict[str, Any]) -> str:
    """One sentence for the officer about a refused change (an entry of
    :func:`refused_own`), naming its edits, who refused it, the stage and the reason
    (a :class:`~meshsync.model.text.Msg`: the edge shows it in the reader's language)."""
    edits = ", ".join(
        f"{e['collection']}/{e['key']} " + ("(delete)" if e["deleted"] else
                                            f"({', '.join(e['fields']) or '-'})")
        for e in entry["edits"]) or "?"
    return Msg("%(partition)s change %(seq)s was refused at %(at)s (%(stage)s): %(reason)s. "
               "Not safe there: %(edits)s.", partition=entry["partition"], seq=entry["seq"],
               at=entry["at"], stage=entry["stage"], reason=entry["reason"], edits=edits)
