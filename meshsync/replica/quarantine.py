"""Quarantine: taking back what a revoked device wrote past its revocation point
before this node knew of the revocation (docs/failure-cases.md B14).

Every received change is checked against the known revocations before it is applied
(:mod:`meshsync.replica.receive`), but a node may have accepted a device's changes beyond
seq N before it learned "device X valid only up to seq N". Kept, they would stay in
its records, be offered to every peer and refused by each, so its syncs would never
converge. When a node learns a revocation (:meth:`meshsync.replica.node.Node.add_credential`,
which sync sessions use, and a bundle's credential items), it calls
:func:`quarantine_revoked` in the same transaction:

* For every feed of a revoked author whose head is past the revocation point, the
  first change the trust policy now refuses (``authorize_change``: the revocation
  names it; a change another certificate of the author still allows stays) and every
  later change of that feed are removed from the feed (:meth:`Store.truncate_feed`).
  The head goes back to the last change kept, so the version vector no longer claims
  them: they are no longer offered, and a peer sends them again only if it does not
  know the revocation itself (then this node refuses them as any revoked change).
* Each one is kept as evidence (:meth:`Store.add_quarantined`, listed by
  ``meshsync log``) and logged as a refusal, stage ``authorization``, whose reason
  names the revocation and says ``quarantined``.
* Every record those changes touched is rebuilt from the ops of the changes still
  held (changes stored as invalid are skipped: the pipeline never applied them). A
  record state is a function of the *set* of ops applied (:mod:`meshsync.replica.crdt`), so
  this gives byte for byte the state of a node that never accepted the quarantined
  changes, which is what every peer that refused them holds. A record that only
  quarantined changes touched loses its row, as such a peer has none.

What the merge rules then give: an honest edit concurrent with a quarantined one
keeps its value; a delete by the revoked device is undone; an honest edit that saw a
quarantined value (names it in ``pred``) still replaces it and, made later, stays the
visible value, but it never named the older value the quarantined op had replaced,
so that older value comes back beside it as a conflict for an officer to resolve
(``meshsync conflicts``), exactly as on a peer that never saw the quarantined op.

The rule is the same for every author, this node's own key included: its changes
are quarantined only if its own key is revoked below them (an old key after a
rotation, which every other device refuses anyway).

**Cost.** Finding the feeds reads the feed heads once per learned revocation. The
rebuild reads and decodes (no signature check) every change held in the partitions
the quarantined changes wrote to: on a phone holding 5,000 changes, quarantining
1,000 of them takes about 0.1 s (SQLite, 2 cores); a central server reads only the
touched partitions (a TPS each). Nothing here runs on the sync or ingest path
unless a revocation was learned.

The module is sans-I/O: it works on a :class:`~meshsync.store.Store` inside the
caller's transaction and never reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from meshsync.model.change import Change, FeedId, decode_stored
from meshsync.model.errors import AuthorizationError
from meshsync.model.hlc import wall_ms
from meshsync.model.identity import device_id
from meshsync.replica.crdt import RecordState
from meshsync.replica.progress import record_row
from meshsync.store.base import QuarantinedChange, Refusal, Store, StoredChange

if TYPE_CHECKING:
    from meshsync.replica.policy import Authorizer

RecordKey = tuple[str, str, str]  # (partition, collection, key)

#: Stage of the refusal logged for each quarantined change (as for a revoked change
#: refused on arrival).
STAGE = "authorization"


def quarantine_revoked(store: Store, trust: Authorizer, source: str) -> list[Refusal]:
    """Quarantine every held change the known revocations refuse (see module docs).

    Call inside the caller's transaction. ``trust`` needs a ``revocation_for`` method
    (:class:`meshsync.trust.TrustStore`); any other authorizer knows no revocations
    and nothing is done. ``source`` goes into the refusals logged (where the
    revocation came from). Returns one refusal per quarantined change, in feed and
    seq order. Running it again when nothing new was revoked does nothing.
    """
    revocation_for = getattr(trust, "revocation_for", None)
    if revocation_for is None:
        return []
    from meshsync.trust.grant import NOT_REVOKED  # X.509 loads only with a trust store

    refusals: list[Refusal] = []
    touched: set[RecordKey] = set()
    points: dict[bytes, Any] = {}
    for info in store.feeds():
        if info.author not in points:
            points[info.author] = revocation_for(info.author)
        point = points[info.author]
        if point is NOT_REVOKED or info.head_seq <= (point or 0):
            continue
        cut = _first_refused(store, trust, info.feed, point or 0)
        if cut is not None:
            refusals += _quarantine_feed(store, trust, info.feed, cut, source, touched)
    rebuild_records(store, touched)
    return refusals


def _authorize(trust: Authorizer, change: Change) -> str | None:
    """Why the trust policy refuses ``change`` now, as the pipeline words it; None if
    it allows it."""
    try:
        trust.authorize_change(change.author, change.partition, change.seq,
                               wall_ms(change.hlc))
    except AuthorizationError as exc:
        who = device_id(change.author)
        return exc.detail if who[:8] in exc.detail else f"device {who}: {exc.detail}"
    return None


def _decode(stored: StoredChange) -> Change:
    return decode_stored(stored.body, stored.sig, stored.hash)


def _first_refused(store: Store, trust: Authorizer, feed: FeedId, point: int) -> int | None:
    """The seq of the first change past ``point`` that ``trust`` refuses, or None."""
    for stored in store.iter_changes(feed, point):
        if _authorize(trust, _decode(stored)) is not None:
            return stored.seq
    return None


def _quarantine_feed(store: Store, trust: Authorizer, feed: FeedId, first: int, source: str,
                     touched: set[RecordKey]) -> list[Refusal]:
    """Take changes ``first``.. out of ``feed``: evidence, refusals, touched records."""
    out = []
    for stored in store.truncate_feed(feed, first - 1):
        change = _decode(stored)
        why = _authorize(trust, change) or f"follows quarantined change seq {first}"
        reason = (f"{why}; quarantined: accepted before this device knew of the "
                  "revocation, now taken out of its records and no longer offered")
        store.add_quarantined(QuarantinedChange(change.author, change.partition, change.seq,
                                                stored.hash, stored.body, stored.sig,
                                                reason))
        refusal = Refusal(change.author, change.partition, change.seq, STAGE, reason, source,
                          stored.hash)
        store.add_refusal(refusal)
        out.append(refusal)
        if stored.invalid is None:  # an invalid change was never applied to records
            touched.update((change.partition, op.collection, op.key) for op in change.ops)
    return out


def rebuild_records(store: Store, keys: Iterable[RecordKey]) -> None:
    """Recompute the records ``keys`` from every op of the held, valid changes.

    Call inside the caller's transaction. The records' rows are read first (a
    PostgreSQL store checks its writes against the versions read), then every
    change of the partitions concerned is read; a record no held op touches any
    more loses its row.
    """
    wanted = set(keys)
    if not wanted:
        return
    held = store.load_records(sorted(wanted))
    partitions = {rkey[0] for rkey in wanted}
    states: dict[RecordKey, RecordState] = {}
    for info in store.feeds():
        if info.partition not in partitions:
            continue
        for stored in store.iter_changes(info.feed):
            if stored.invalid is not None:
                continue
            change = _decode(stored)
            for index, op in enumerate(change.ops):
                rkey = (change.partition, op.collection, op.key)
                if rkey not in wanted:
                    continue
                state = states.get(rkey)
                if state is None:
                    state = states[rkey] = RecordState()
                state.apply_op(change.op_id(index), op)
    store.save_records([record_row(rkey, states[rkey]) for rkey in sorted(states)])
    for rkey in sorted(wanted - states.keys()):
        if rkey in held:
            store.delete_record(*rkey)
