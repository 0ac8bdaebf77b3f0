"""The receive pipeline: how a batch of received changes enters a store.

Every change passes, in this order (docs/protocol.md): size and decode (done by the
reader that produced the :class:`~meshsync.model.change.Change`), duplicate check by hash
(before any expensive work, so replays cost little), signature, authorization
(certificate, role, scope, revocation), hash chain (gap or fork), clock sanity,
validation, then apply.

**Batch rule.** A signature failure raises :class:`~meshsync.model.errors.SignatureError`
and the caller's transaction rolls back: data that is not what its author signed
makes the whole batch (bundle, sync frame) untrustworthy. Every other refusal
(authorization, hash-chain gap, fork) refuses that change only, is logged as a
:class:`~meshsync.store.Refusal`, and also refuses the later changes of the same
feed in the batch (they could not chain). A change that fails its collection's
validator is stored and forwarded but kept out of the materialised records, and
reported in ``invalid``; one that only an older schema version held here accepts is
applied and reported in ``outdated`` (:mod:`meshsync.replica.schema`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from meshsync.model.change import SIGN_CONTEXT, Change, FeedId, Put
from meshsync.model.errors import AuthorizationError, SignatureError
from meshsync.model.hlc import HybridClock, wall_ms
from meshsync.model.identity import device_id, short_id
from meshsync.replica.crdt import RecordState
from meshsync.replica.policy import validate
from meshsync.store.base import ForkEvidence, RecordRow, Refusal, Store, StoredChange

if TYPE_CHECKING:
    from meshsync.replica.policy import Authorizer, Validator

RecordKey = tuple[str, str, str]  # (partition, collection, key)

SignedItem = tuple[bytes, bytes, bytes]
"""``(public key 32 B, signature 64 B, signed bytes)``."""


class Verifier(Protocol):
    """Checks many Ed25519 signatures, possibly on other cores while the caller works.

    ``submit(items)`` starts checking and returns a function that waits for the
    results: one bool per item, True where the signature verifies. The I/O layer
    supplies one (:mod:`meshsync.host.verify_pool`); the core only calls it.
    """

    def submit(self, items: list[SignedItem]) -> Callable[[], list[bool]]:
        """Start checking ``items``; the returned function waits for the results."""
        ...


#: Changes per submitted chunk: the pipeline starts on the first chunk while the
#: verifier is still checking the later ones.
VERIFY_CHUNK = 128
#: Batches with fewer changes than this, and fewer signed bytes than
#: :data:`VERIFY_AHEAD_BYTES`, are verified one by one, in pipeline order.
VERIFY_AHEAD_MIN = 16
#: Signed bytes from which even one change is worth checking on another core (its
#: SHA-512 pass then overlaps this thread's work: a 500-voter change is ~125 KB).
VERIFY_AHEAD_BYTES = 32 * 1024


#: Refusals a report lists one by one; past it they are only counted, by stage (a
#: peer may send thousands of changes no one accepts: issue 14).
MAX_LISTED_REFUSALS = 100


@dataclass
class ApplyReport:
    """What one batch did. Counts are numbers of changes.

    ``refused`` lists the first :data:`MAX_LISTED_REFUSALS` refusals;
    ``refused_total`` and ``refused_by_stage`` count all of them.
    """

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)
    invalid: list[Refusal] = field(default_factory=list)
    clock_warnings: list[str] = field(default_factory=list)
    refused_total: int = 0
    refused_by_stage: dict[str, int] = field(default_factory=dict)
    outdated: list[Refusal] = field(default_factory=list)
    """Applied changes the newest schema refuses but an older held version accepts."""

    def add_refusal(self, refusal: Refusal) -> None:
        """Count ``refusal`` and list it while the list is short."""
        self.refused_total += 1
        self.refused_by_stage[refusal.stage] = self.refused_by_stage.get(refusal.stage, 0) + 1
        if len(self.refused) < MAX_LISTED_REFUSALS:
            self.refused.append(refusal)

    def merge(self, other: ApplyReport) -> None:
        """Add ``other``'s counts and lists to this report."""
        self.received += other.received
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.refused += other.refused[:max(0, MAX_LISTED_REFUSALS - len(self.refused))]
        self.refused_total += other.refused_total
        for stage, n in other.refused_by_stage.items():
            self.refused_by_stage[stage] = self.refused_by_stage.get(stage, 0) + n
        self.invalid += other.invalid
        self.clock_warnings += other.clock_warnings
        self.outdated += other.outdated

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        def refusal(r: Refusal) -> dict[str, object]:
            return {"author": device_id(r.author), "partition": r.partition, "seq": r.seq,
                    "stage": r.stage, "reason": r.reason}
        return {"received": self.received, "applied": self.applied,
                "duplicates": self.duplicates,
                "refused": [refusal(r) for r in self.refused],
                "refused_total": self.refused_total,
                "refused_by_stage": dict(sorted(self.refused_by_stage.items())),
                "invalid": [refusal(r) for r in self.invalid],
                "clock_warnings": self.clock_warnings,
                "outdated": [refusal(r) for r in self.outdated]}


class Receiver:
    """Applies one batch inside the caller's transaction. Create one per batch."""

    def __init__(self, store: Store, trust: Authorizer, validators: Mapping[str, Validator],
                 clock: HybridClock, now_ms: int, source: str,
                 saver: Callable[[RecordKey, RecordState], RecordRow],
                 verifier: Verifier | None = None) -> None:
        self.store, self.trust = store, trust
        # A plain dict for the batch: looked up per op, and a node's Validators mapping
        # consults its schema documents on every lookup (measured: ~8% of an import).
        self.validators: dict[str, Validator] = dict(validators)
        self.clock, self.now_ms, self.source = clock, now_ms, source
        self._saver = saver
        self._verifier = verifier
        self._verified: set[tuple[bytes, bytes]] = set()
        self._pending: deque[tuple[list[Change], Callable[[], list[bool]]]] = deque()
        self._submitted: set[tuple[bytes, bytes]] = set()  # in _pending, not yet reached
        self._unsettled: list[Change] = []  # reached, result not taken yet
        self.report = ApplyReport()
        self._heads: dict[FeedId, tuple[int, bytes]] = {}
        self._blocked: dict[FeedId, int] = {}
        self._states: dict[RecordKey, RecordState] = {}
        self._warned: set[bytes] = set()

    def receive(self, changes: Iterable[Change]) -> ApplyReport:
        """Run every change through the pipeline, then write touched records once."""
        if isinstance(changes, list):
            self.verify_ahead(changes)
        for change in changes:
            self.receive_one(change)
        self.flush()
        return self.report

    def flush(self) -> None:
        """Wait for the signature checks still running (raising
        :class:`~meshsync.model.errors.SignatureError` for the first change, in pipeline
        order, that failed), then write the record states touched so far. Call it
        before the transaction ends: the changes it has not settled are unverified."""
        self._settle()
        self.store.save_records([self._saver(rkey, state)
                                 for rkey, state in self._states.items()])
        self._states.clear()

    def verify_ahead(self, changes: Sequence[Change]) -> None:
        """Start checking the signatures of those ``changes`` the store does not hold yet.

        Uses the verifier given at construction (none: does nothing), in chunks of
        :data:`VERIFY_CHUNK`, so the checks run on other cores while this thread
        runs the pipeline. :meth:`receive_one` does not wait for them: it goes on
        with a submitted change, and :meth:`flush` waits for every result before
        anything is saved. A change whose check failed is then checked again, in
        pipeline order, which raises as usual, and the caller's transaction rolls
        back everything the batch wrote (the node restores its clock too). So the
        outcome of a batch is the same with or without this step.
        """
        if self._verifier is None or (len(changes) < VERIFY_AHEAD_MIN and sum(
                len(c.body) for c in changes) < VERIFY_AHEAD_BYTES):
            return
        todo = [c for c in changes if c.seq > self._head(c.feed)[0]]
        if not todo:
            return
        for start in range(0, len(todo), VERIFY_CHUNK):
            chunk = todo[start:start + VERIFY_CHUNK]
            waiter = self._verifier.submit(
                [(c.author, c.sig, SIGN_CONTEXT + c.body) for c in chunk])
            self._pending.append((chunk, waiter))
            self._submitted.update((c.hash, c.sig) for c in chunk)

    def _check_signature(self, change: Change) -> None:
        key = (change.hash, change.sig)
        if key in self._submitted:  # settled at flush, before anything is saved
            self._submitted.discard(key)
            self._unsettled.append(change)
        elif key in self._verified:
            self._verified.discard(key)
        else:
            self._verify_now(change)

    def _verify_now(self, change: Change) -> None:
        """Check ``change`` here; if it fails, an earlier unsettled change that also
        failed is reported instead, as the one-by-one pipeline would have."""
        try:
            change.verify()
        except SignatureError:
            self._settle()
            raise

    def _settle(self) -> None:
        """Wait for the submitted checks; raise for the first reached change that failed."""
        while self._pending:
            chunk, waiter = self._pending.popleft()
            self._verified.update((c.hash, c.sig)
                                  for c, ok in zip(chunk, waiter(), strict=True) if ok)
        self._submitted.clear()
        unsettled, self._unsettled = self._unsettled, []
        for change in unsettled:
            key = (change.hash, change.sig)
            if key in self._verified:
                self._verified.discard(key)
            else:
                change.verify()

    def _head(self, feed: FeedId) -> tuple[int, bytes]:
        head = self._heads.get(feed)
        if head is None:
            info = self.store.feed_head(feed)
            head = self._heads[feed] = (info.head_seq, info.head_hash) if info else (0, b"")
        return head

    def _refuse(self, change: Change, stage: str, reason: str) -> None:
        refusal = Refusal(change.author, change.partition, change.seq, stage, reason,
                          self.source, change.hash)
        self.report.add_refusal(refusal)
        self.store.add_refusal(refusal)
        self._blocked.setdefault(change.feed, change.seq)

    def receive_one(self, change: Change) -> None:
        """Run one change through the pipeline (records are written at :meth:`flush`).

        If it raises while earlier changes' signatures are still being checked, those
        are settled first: a forgery among them is what is reported, as it would
        have been one by one."""
        try:
            self._receive_one(change)
        except SignatureError:
            raise  # _verify_now settled the earlier ones
        except BaseException:
            if self._unsettled:
                self._settle()
            raise

    def _receive_one(self, change: Change) -> None:
        self.report.received += 1
        feed = change.feed
        head_seq, head_hash = self._head(feed)
        if change.seq <= head_seq:
            self._known_seq(change)
            return
        if feed in self._blocked:
            self._refuse(change, "hash chain",
                         f"follows refused change seq {self._blocked[feed]} of this feed")
            return
        self._check_signature(change)
        try:
            self.trust.authorize_change(change.author, change.partition, change.seq,
                                        wall_ms(change.hlc))
        except AuthorizationError as exc:
            who = device_id(change.author)
            reason = exc.detail if who[:8] in exc.detail else f"device {who}: {exc.detail}"
            self._refuse(change, "authorization", reason)
            return
        if change.seq != head_seq + 1:
            self._refuse(change, "hash chain",
                         f"gap: {short_id(change.author)}/{change.partition} holds seq "
                         f"{head_seq}, got {change.seq}; the changes between are missing")
            return
        if change.prev != head_hash:
            self._fork(change, change.seq - 1, head_hash,
                       "follows a different change at the previous seq")
            return
        self._check_clock(change)
        invalid = self._validate(change)
        if invalid is None:
            self._apply(change)
        self.store.append_change(
            feed, StoredChange(change.seq, change.hash, change.body, change.sig, invalid),
            change.hlc)
        self._heads[feed] = (change.seq, change.hash)
        self.report.applied += 1

    def _known_seq(self, change: Change) -> None:
        held = self.store.change_at(change.feed, change.seq)
        if held is not None and held.hash == change.hash:
            self.report.duplicates += 1
            return
        self._verify_now(change)  # evidence must be genuinely signed, or it is tampering
        assert held is not None
        self._fork(change, change.seq, held.hash, "second change at a seq already held")

    def _fork(self, change: Change, seq: int, held_hash: bytes, note: str) -> None:
        self.store.add_fork(ForkEvidence(change.author, change.partition, seq, held_hash,
                                         change.body, change.sig, note))
        self._refuse(change, "fork",
                     f"device {short_id(change.author)} forked its feed "
                     f"{change.partition} at seq {seq}: {note}")

    def _check_clock(self, change: Change) -> None:
        ahead = self.clock.observe(change.hlc + len(change.ops) - 1, self.now_ms)
        if ahead and change.author not in self._warned:
            self._warned.add(change.author)
            self.report.clock_warnings.append(
                f"device {short_id(change.author)} stamps changes {ahead // 1000} s ahead "
                "of this device's clock; one of the two clocks is wrong")

    def _validate(self, change: Change) -> str | None:
        """Judge each put of ``change`` by its collection's validator; returns the
        reason it is kept out of the records, or None if it applies.

        A put with no ``pred`` that writes a required field creates the record (on
        its author's device no value of that field existed, so the author's own
        put was judged as a whole record): it is judged whole here too, so a new
        record lacking required fields is refused on receive as by a local put. A
        change the newest schema refuses but an older held version accepts is
        applied and flagged (:mod:`meshsync.replica.schema`).
        """
        problems, older = [], []
        for op in change.ops:
            validator = self.validators.get(op.collection)
            if validator is None or not isinstance(op, Put):
                continue
            whole = not op.pred and bool(
                frozenset(getattr(validator, "required", ())) & op.fields.keys())
            found = validate(validator, change.partition, op.key, op.fields,
                             partial=not whole)
            if found:
                problems += [f"{op.collection}/{op.key} {name}: {message}"
                             for name, message in found]
                older.append(self._older(validator, change.partition, op, whole))
        if not problems:
            return None
        reason = "; ".join(problems)
        if all(older):
            self._flag_outdated(change, older, reason)
            return None
        refusal = Refusal(change.author, change.partition, change.seq, "validation", reason,
                          self.source, change.hash)
        self.report.invalid.append(refusal)
        self.store.add_refusal(refusal)
        return reason

    @staticmethod
    def _older(validator: Validator, partition: str, op: Put, whole: bool) -> str | None:
        """``"voters v1"`` if an older held schema version accepts ``op``, else None."""
        older_accepts = getattr(validator, "older_accepts", None)
        if older_accepts is None:
            return None
        doc = older_accepts(op.fields, partial=not whole, partition=partition)
        return None if doc is None else f"{doc.collection} v{doc.version}"

    def _flag_outdated(self, change: Change, older: list[str | None], reason: str) -> None:
        versions = ", ".join(dict.fromkeys(v for v in older if v))
        refusal = Refusal(change.author, change.partition, change.seq, "schema version",
                          f"applied: valid under schema {versions} its author held, not "
                          f"under the newest held here: {reason}", self.source, change.hash)
        self.report.outdated.append(refusal)
        self.store.add_refusal(refusal)

    def _state(self, rkey: RecordKey) -> RecordState:
        state = self._states.get(rkey)
        if state is None:
            state = self._states[rkey] = RecordState.of_row(self.store.load_record(*rkey))
        return state

    def _prefetch(self, change: Change) -> list[RecordKey]:
        """Load the states of the change's records not held yet, in one store call;
        returns the record key of each op."""
        part = change.partition
        rkeys = [(part, op.collection, op.key) for op in change.ops]
        states = self._states
        missing = [k for k in dict.fromkeys(rkeys) if k not in states]
        if len(missing) >= 2:
            rows = self.store.load_records(missing)
            for rkey in missing:  # RecordState.of_row, inlined: once per record
                row = rows.get(rkey)
                states[rkey] = RecordState.decode(row.state) if row else RecordState()
        return rkeys

    def _apply(self, change: Change) -> None:
        rkeys = self._prefetch(change)
        states, hlc, author = self._states, change.hlc, change.author
        for index, (op, rkey) in enumerate(zip(change.ops, rkeys, strict=True)):
            state = states.get(rkey) or self._state(rkey)
            if type(op) is Put:  # RecordState.apply_op, inlined: the per-op hot path
                state.apply_put((hlc + index, author), op.fields, op.pred, sorted_fields=True)
            else:
                state.apply_delete((hlc + index, author), op.pred)
