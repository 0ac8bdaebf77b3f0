"""The node: one device's store, key, clock, trust and validators, behind one API.

The node is sans-I/O in time: it never reads the clock, it calls the ``clock``
function it was given (milliseconds since the Unix epoch). Use
:func:`meshsync.host.local.open_node` to get a node on a home with the system clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from meshsync.model.change import (
    Change,
    Delete,
    FeedId,
    Op,
    OpId,
    canonical_put,
    check_name,
    check_partition,
    decode_stored,
    sign_change,
)
from meshsync.model.errors import (
    AuthorizationError,
    ConcurrentAppendError,
    NotFoundError,
    UsageError,
    ValidationError,
)
from meshsync.model.hlc import HybridClock
from meshsync.model.identity import DeviceKey, sha256
from meshsync.model.text import Msg
from meshsync.replica import progress
from meshsync.replica.crdt import RecordState
from meshsync.replica.policy import Authorizer, Judged, OpenTrust, Validator, validate
from meshsync.replica.quarantine import quarantine_revoked
from meshsync.replica.receive import ApplyReport, Receiver, RecordKey, Verifier
from meshsync.replica.records import Record, RecordReader, several_partitions
from meshsync.replica.schema import Validators
from meshsync.store.base import RecordRow, Refusal, Store, StoredChange

VersionVector = dict[FeedId, int]
"""Feed -> highest contiguous seq held."""

Clock = Callable[[], int]
"""Returns wall-clock milliseconds since the Unix epoch."""

#: Times a credential is stored again after another process sharing the store
#: (central's PostgreSQL) won a race with its quarantine.
RACE_RETRIES = 5


def record_row(rkey: RecordKey, state: RecordState) -> RecordRow:
    """The stored row of a record state, with its progress classification."""
    return progress.record_row(rkey, state)


class Node:
    """A device's replica.

    Args:
        store: where changes and records live (see :mod:`meshsync.store`).
        key: the device's Ed25519 key; it signs every local change.
        clock: wall-clock milliseconds since the epoch (injected; never read here).
        trust: decides who may write (default :class:`OpenTrust` until enrolled).
        default_partition: partition of local edits that name none.
    """

    def __init__(self, store: Store, key: DeviceKey, clock: Clock, *,
                 trust: Authorizer | None = None, default_partition: str = "local") -> None:
        self.store = store
        self.key = key
        self.trust: Authorizer = trust or OpenTrust()
        #: Validators by collection: those registered, and those of the schema
        #: documents the trust store holds (:mod:`meshsync.replica.schema`).
        self.validators = Validators(lambda: getattr(self.trust, "schemas", None))
        #: This device's certificate role, when known (set by the I/O layer).
        self.role: str | None = None
        #: Checks many signatures at once, e.g. on several cores (set by the I/O
        #: layer: :func:`meshsync.host.verify_pool.shared_verifier`); None: one by one.
        self.verifier: Verifier | None = None
        #: Called with the size in bytes of received data about to be stored (a sync
        #: batch, a bundle) before anything of it is; raises
        #: :class:`~meshsync.model.errors.StorageLowError` to refuse it. Set by the I/O
        #: layer (:class:`meshsync.host.reserve.DiskReserve`); None: no check.
        self.inbound_guard: Callable[[int], None] | None = None
        #: By collection: a function given the fields of each local put, returning the
        #: fields to sign (a schema's one spelling, e.g. coklit's NFC names). Set by a
        #: schema (``register(node)``); the node itself keeps values as given, and
        #: received changes are never passed through it.
        self.normalisers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self.default_partition = check_partition(default_partition)
        self._clock = clock
        raw = store.get_meta("hlc")
        self.hlc = HybridClock(int.from_bytes(raw, "big") if raw else 0)

    # -- configuration -------------------------------------------------------

    def register_validator(self, collection: str, validator: Validator) -> None:
        """Check every local edit and received op of ``collection`` with ``validator``."""
        self.validators[check_name("collection", collection)] = validator

    def add_credential(self, blob: bytes) -> bool:
        """Keep a certificate or revocation so it travels in bundles and syncs.

        Returns True if it was new. If the trust policy has an ``add`` method (a
        :class:`meshsync.trust.TrustStore`), the blob is checked by it first and
        :class:`~meshsync.model.errors.AuthorizationError` is raised if it is invalid.
        A revocation new here quarantines, in the same transaction, the changes it
        refuses that this node had accepted (:meth:`quarantine_revoked`).
        """
        from meshsync.trust.revocation import is_revocation  # X.509: loaded when needed

        adder = getattr(self.trust, "add", None)
        learned = adder(blob) if adder is not None else None
        for attempt in range(RACE_RETRIES):
            try:
                with self.store.transaction():
                    new = self.store.add_credential(sha256(blob), blob)
                    if learned == "revocation" or (new and is_revocation(blob)):
                        self.quarantine_revoked()
                return new
            except ConcurrentAppendError:
                if attempt == RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def quarantine_revoked(self, source: str = "revocation") -> list[Refusal]:
        """Take back the held changes the known revocations refuse (a device's changes
        past its revocation point, accepted before the revocation was known): out of
        their feeds, kept as evidence, logged as refusals from ``source``, and the
        records they touched rebuilt without them (see :mod:`meshsync.replica.quarantine`).

        Call inside the caller's transaction, after the batch that taught the
        revocation is flushed. Returns one refusal per quarantined change.
        """
        return quarantine_revoked(self.store, self.trust, source)

    # -- local edits ---------------------------------------------------------

    def put(self, collection: str, key: str, fields: Mapping[str, Any],
            partition: str | None = None) -> Change:
        """Set ``fields`` of a record, as one signed change. Returns the change.

        Other fields keep their values. Raises :class:`UsageError` (bad names or
        values), :class:`~meshsync.model.errors.TooLargeError` (record > 8 MiB) or
        :class:`ValidationError` (the collection's validator refused the result).
        """
        part = self._partition_for(collection, key, partition)
        try:
            return self.write(part, [("put", collection, key, dict(fields))])
        except UsageError as exc:
            if partition is not None or part == self.default_partition or \
                    not str(exc).startswith("this device may not write here"):
                raise
            raise UsageError(f"{exc}; {collection}/{key} exists only in partition {part}, "
                             "so the edit went there: give --partition to write a record "
                             "in a partition this device may write") from exc

    def delete(self, collection: str, key: str, partition: str | None = None) -> Change:
        """Delete a record (a tombstone). Raises :class:`NotFoundError` if absent."""
        part = self._partition_for(collection, key, partition)
        row = self.store.load_record(part, collection, key)
        if row is None or RecordState.decode(row.state).deleted:
            raise NotFoundError(Msg("no record %(collection)s/%(key)s in partition %(part)s",
                                    collection=collection, key=key, part=part))
        return self.write(part, [("delete", collection, key, None)])

    def write(self, partition: str, edits: Iterable[tuple[Any, ...]], *,
              judged: Judged | None = None, meta: Mapping[str, bytes] | None = None
              ) -> Change:
        """Apply several edits as one change: ``("put", coll, key, fields)`` or
        ``("delete", coll, key, None)``. All or nothing. A put's fields go through the
        collection's normaliser first, if it has one (:attr:`normalisers`).

        A put may carry a fifth item, a collection of op ids (as in
        :attr:`Record.conflicts <meshsync.replica.records.Record>`) the put must
        leave live: its ``pred`` omits them, so they stay as concurrent values of
        the fields it writes, a visible conflict (used by the coklit import's
        three-way merge when the baseline and an officer changed the same field).

        ``judged``: records the caller has already found valid with the very
        validator this node uses (:class:`~meshsync.replica.policy.Judged`); a record
        whose resulting fields are exactly those judged is not validated again, every
        other one is. ``meta``: store values (name -> bytes, :meth:`Store.set_meta
        <meshsync.store.base.Store.set_meta>`) set in the change's own transaction,
        so they are stored exactly when the change is (an import's progress).
        """
        partition = check_partition(partition)
        edits = list(edits)
        rkeys: dict[RecordKey, None] = {}
        for _kind, collection, key, *_rest in edits:
            rkey = (partition, check_name("collection", collection), check_name("key", key))
            if rkey in rkeys:
                raise UsageError(f"{collection}/{key} appears twice in one change")
            rkeys[rkey] = None
        states = self._load_states(list(rkeys))
        ops = [self._local_op(kind, rkey, states[rkey], self._normalised(kind, rkey, fields),
                              set(keep[0]) if keep else ())
               for (kind, _c, _k, fields, *keep), rkey in zip(edits, rkeys, strict=True)]
        if not ops:
            raise UsageError("nothing to write")
        return self._commit_local(partition, ops, states, judged, meta or {})

    def _load_states(self, rkeys: list[RecordKey]) -> dict[RecordKey, RecordState]:
        """The held states of ``rkeys`` (empty ones for records not held), in one store
        call when there are several."""
        if len(rkeys) < 2:
            return {rkey: self._load_state(rkey) for rkey in rkeys}
        rows = self.store.load_records(rkeys)
        return {rkey: RecordState.of_row(rows.get(rkey)) for rkey in rkeys}

    def _normalised(self, kind: str, rkey: RecordKey, fields: Any) -> Any:
        """A put's fields through its collection's normaliser, if it has one."""
        normalise = self.normalisers.get(rkey[1])
        if normalise is None or kind != "put" or not isinstance(fields, dict):
            return fields
        return normalise(fields)

    def _local_op(self, kind: str, rkey: RecordKey, state: RecordState, fields: Any,
                  keep: Collection[OpId] = ()) -> Op:
        if kind == "put":
            if not isinstance(fields, dict) or not fields:
                raise UsageError("a put needs at least one field")
            pred = state.field_ops(fields).difference(keep)
            return canonical_put(rkey[1], rkey[2], fields, tuple(pred))
        if kind == "delete":
            return Delete(rkey[1], rkey[2], tuple(sorted(state.live_ops())))
        raise UsageError(f"unknown edit kind {kind!r}")

    def _commit_local(self, partition: str, ops: list[Op],
                      states: dict[RecordKey, RecordState],
                      judged: Judged | None = None,
                      meta: Mapping[str, bytes] | None = None) -> Change:
        feed = (self.key.public_key, partition)
        now = self._clock()
        with self.store.transaction():
            head = self.store.feed_head(feed)
            seq, prev = (head.head_seq + 1, head.head_hash) if head else (1, b"")
            try:
                self.trust.authorize_change(self.key.public_key, partition, seq, now)
            except AuthorizationError as exc:
                raise UsageError(Msg("this device may not write here: %(detail)s",
                                     detail=exc.detail)) from exc
            with self.hlc.undone_on_error():
                hlc = self.hlc.reserve(now, len(ops))
                change = sign_change(self.key, partition, seq, prev, hlc, tuple(ops))
                self._apply_local(change, states, judged)
            self.store.append_change(
                feed, StoredChange(seq, change.hash, change.body, change.sig), hlc)
            for name, value in (meta or {}).items():
                self.store.set_meta(name, value)
            self.save_clock()
        return change

    def _apply_local(self, change: Change, states: dict[RecordKey, RecordState],
                     judged: Judged | None) -> None:
        """Apply ``change`` to ``states`` (loaded for this write only, so changed in
        place), validate each record it touched and save them."""
        for index, op in enumerate(change.ops):
            rkey = (change.partition, op.collection, op.key)
            states[rkey].apply_op(change.op_id(index), op, sorted_fields=True)
        validators: dict[str, Validator | None] = {}
        for rkey, state in states.items():
            if rkey[1] not in validators:  # the mapping consults schema documents
                validators[rkey[1]] = self.validators.get(rkey[1])
            validator = validators[rkey[1]]
            if validator is None or state.deleted:
                continue
            visible = state.visible()
            if judged is not None and judged.covers(validator, rkey, visible):
                continue
            errors = validate(validator, rkey[0], rkey[2], visible, partial=False)
            if errors:
                raise ValidationError(rkey[1], errors)
        self.store.save_records([record_row(rkey, state) for rkey, state in states.items()])

    def _load_state(self, rkey: RecordKey) -> RecordState:
        return RecordState.of_row(self.store.load_record(*rkey))

    def _partition_for(self, collection: str, key: str, partition: str | None) -> str:
        if partition is not None:
            return check_partition(partition)
        rows = self.store.find_record(collection, key)
        if len(rows) == 1:
            return rows[0].partition
        if len(rows) > 1:
            raise several_partitions(collection, key, rows)
        return self.default_partition

    # -- reading -------------------------------------------------------------

    def get(self, collection: str, key: str, partition: str | None = None) -> Record | None:
        """The record, or None if this device holds no op of it (see
        :meth:`RecordReader.get <meshsync.replica.records.RecordReader.get>`)."""
        return RecordReader(self.store).get(collection, key, partition)

    def records(self, collection: str, partition_prefix: str = "", *,
                include_deleted: bool = False) -> Iterator[Record]:
        """Records of ``collection`` under ``partition_prefix`` (whole path segments)."""
        return RecordReader(self.store).records(collection, partition_prefix,
                                                include_deleted=include_deleted)

    def conflicts(self, collection: str | None = None) -> list[Record]:
        """Records with at least one open conflict."""
        return RecordReader(self.store).conflicts(collection)

    def canonical_state(self) -> bytes:
        """All record states, concatenated in key order: equal on devices holding
        the same ops (used by convergence tests)."""
        return b"".join(
            f"{r.partition}\x00{r.collection}\x00{r.key}\x00".encode() + r.state
            for r in self.store.iter_records())

    # -- sync primitives -----------------------------------------------------

    def version_vector(self) -> VersionVector:
        """Feed -> highest contiguous seq held."""
        return {f.feed: f.head_seq for f in self.store.feeds()}

    def changes_since(self, vv: Mapping[FeedId, int],
                      feeds: Callable[[FeedId], bool] | None = None) -> Iterator[Change]:
        """Changes this node holds beyond ``vv``, feed by feed in seq order.

        ``feeds`` optionally filters which feeds to offer (share policy).
        """
        for info in self.store.feeds():
            if feeds is not None and not feeds(info.feed):
                continue
            for stored in self.store.iter_changes(info.feed, vv.get(info.feed, 0)):
                yield decode_stored(stored.body, stored.sig, stored.hash)

    def receive(self, changes: Iterable[Change], source: str = "api") -> ApplyReport:
        """Apply received changes in one transaction (see :mod:`meshsync.replica.receive`).

        Raises :class:`~meshsync.model.errors.SignatureError` (nothing stored) if any
        signature fails; other refusals are listed in the returned report. Raises
        :class:`~meshsync.model.errors.StorageLowError` (nothing stored) if the
        :attr:`inbound_guard` refuses the batch.
        """
        if self.inbound_guard is not None and isinstance(changes, list):
            self.inbound_guard(sum(len(c.body) for c in changes))
        # the clock must not keep what was rolled back
        with self.hlc.undone_on_error(), self.store.transaction():
            report = self.receiver(source).receive(changes)
            self.save_clock()
        return report

    def receiver(self, source: str) -> Receiver:
        """A :class:`Receiver` for a batch the caller runs inside its own transaction."""
        return Receiver(self.store, self.trust, self.validators, self.hlc, self._clock(),
                        source, record_row, self.verifier)

    def save_clock(self) -> None:
        """Persist the HLC (inside the caller's transaction)."""
        self.store.set_meta("hlc", self.hlc.last.to_bytes(8, "big"))

    def now_ms(self) -> int:
        """The injected clock's current reading."""
        return self._clock()
