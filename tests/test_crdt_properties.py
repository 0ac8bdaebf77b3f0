"""Merge is commutative, associative and idempotent (docs/architecture.md §4), checked two ways:

* directly on :class:`meshsync.replica.crdt.RecordState`: any permutation of a set of ops, with
  duplicates and with preds arriving before their targets, gives the same bytes, and
  those states match a declarative oracle of the multi-value-register rules;
* across 3-4 devices making random offline edits and syncing at random, then
  receiving everything again in random orders with duplicates: every device and
  fresh MemoryStore and SQLiteStore replicas end byte-identical, and match the oracle.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from helpers import DAY_MS, HOUR_MS, Device, all_changes, deliver, device_key, exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsync.model.change import Change, Delete, FeedId, OpId
from meshsync.model.errors import NotFoundError
from meshsync.model.identity import device_id
from meshsync.replica.crdt import ALL, RecordState
from meshsync.replica.node import Node

# Generation time is measured in wall time; a loaded CI machine must not fail it.
SLOW_OK = [HealthCheck.too_slow]

FIELDS = ("nama", "status", "rt")
VALUES = st.sampled_from(
    [0, 1, True, None, 1.5, "x", "Ma’ruf", b"\x00\xff", [1, "x"], {"k": "v"}])
FIELD_MAPS = st.dictionaries(st.sampled_from(FIELDS), VALUES, min_size=1, max_size=3)
# A peer may send a put with no fields (only a local edit must write one): it supersedes
# the tombstones it names and nothing else.
ANY_FIELD_MAPS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)
AUTHORS = tuple(device_key(f"author-{i}").public_key for i in range(3))
GHOST: OpId = (10_000, AUTHORS[0])  # named in preds, never delivered


# -- the oracle: the merge rules stated over a set of ops -----------------------------


@dataclass(frozen=True)
class OpSpec:
    """One op: ``fields`` None means a delete."""

    op_id: OpId
    fields: dict[str, Any] | None
    pred: tuple[OpId, ...]

    def apply_to(self, state: RecordState) -> None:
        if self.fields is None:
            state.apply_delete(self.op_id, self.pred)
        else:
            state.apply_put(self.op_id, self.fields, self.pred)


Conflicts = dict[str, list[tuple[OpId, Any]]]


def expected(ops: Iterable[OpSpec]) -> tuple[dict[str, Any], bool, Conflicts]:
    """(visible fields, deleted, conflicts) as docs/architecture.md §4 defines them.

    A put's value of field f is live unless some op names the put in its pred and
    is a delete or writes f. A tombstone is live unless some op names it.
    """
    unique = {o.op_id: o for o in ops}.values()

    def superseded(target: OpId, name: str | None) -> bool:
        return any(target in q.pred and (q.fields is None or name is None or name in q.fields)
                   for q in unique)

    entries: dict[str, dict[OpId, Any]] = {}
    for o in unique:
        for name, value in (o.fields or {}).items():
            if not superseded(o.op_id, name):
                entries.setdefault(name, {})[o.op_id] = value
    tombs = {o.op_id for o in unique if o.fields is None and not superseded(o.op_id, None)}
    newest = max((i for e in entries.values() for i in e), default=None)
    deleted = bool(tombs) and (newest is None or max(tombs) > newest)
    visible = {} if deleted else {name: e[max(e)] for name, e in entries.items()}
    conflicts: Conflicts = {name: sorted(e.items(), key=lambda kv: kv[0], reverse=True)
                            for name, e in entries.items() if len(e) > 1}
    if tombs and entries:
        conflicts[ALL] = [(t, None) for t in sorted(tombs, reverse=True)]
    return visible, deleted, conflicts


def apply_all(ops: Iterable[OpSpec], state: RecordState | None = None) -> RecordState:
    state = state if state is not None else RecordState()
    for op in ops:
        op.apply_to(state)
    return state


# -- RecordState properties --------------------------------------------------------------


@st.composite
def op_histories(draw: st.DrawFn) -> list[OpSpec]:
    """Ops whose preds name earlier ops (and sometimes one that never arrives)."""
    ids = draw(st.lists(st.tuples(st.integers(1, 40), st.sampled_from(AUTHORS)),
                        min_size=1, max_size=12, unique=True))
    ops: list[OpSpec] = []
    for op_id in ids:
        earlier = [o.op_id for o in ops] + [GHOST]
        pred = tuple(sorted(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4))))
        is_delete = draw(st.integers(0, 3)) == 0
        ops.append(OpSpec(op_id, None if is_delete else draw(ANY_FIELD_MAPS), pred))
    return ops


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(ops=op_histories(), data=st.data())
def test_record_state_depends_only_on_the_set_of_ops(ops: list[OpSpec],
                                                      data: st.DataObject) -> None:
    extras = data.draw(st.lists(st.sampled_from(ops), max_size=len(ops)), label="duplicates")
    order = data.draw(st.permutations(ops + extras), label="delivery order")
    reference = apply_all(ops)
    shuffled = apply_all(order)
    assert shuffled.encode() == reference.encode()

    visible, deleted, conflicts = expected(ops)
    assert shuffled.visible() == visible
    assert shuffled.deleted is deleted
    assert shuffled.conflicts() == conflicts


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(ops=op_histories(), data=st.data())
def test_record_state_survives_encode_decode_between_ops(ops: list[OpSpec],
                                                         data: st.DataObject) -> None:
    """The receiver loads a stored state, applies more ops and stores it again."""
    order = data.draw(st.permutations(ops), label="delivery order")
    cut = data.draw(st.integers(0, len(order)), label="cut")
    stored = RecordState.decode(apply_all(order[:cut]).encode())
    resumed = apply_all(order[cut:], stored)
    assert resumed.encode() == apply_all(ops).encode()
    assert RecordState.decode(resumed.encode()) == resumed
    # Idempotent: everything again, in reverse, changes nothing.
    assert apply_all(reversed(order), resumed).encode() == resumed.encode()


def test_late_op_stays_superseded_when_the_record_looks_empty() -> None:
    """X is deleted by D, D is undone by a put with no fields: the record holds no
    entry and no tombstone, yet X, arriving last, must stay superseded."""
    a = AUTHORS[0]
    x = OpSpec((1, a), {"status": "x"}, ())
    d = OpSpec((2, a), None, ((1, a),))
    undo = OpSpec((3, a), {}, ((2, a),))
    in_order, late = apply_all([x, d, undo]), apply_all([d, undo, x])
    assert late.encode() == in_order.encode()
    assert late.visible() == {} and not late.exists
    assert expected([x, d, undo]) == ({}, False, {})


def test_oracle_is_not_vacuous() -> None:
    """The oracle itself distinguishes the cases the properties rely on."""
    a, b = AUTHORS[0], AUTHORS[1]
    put1 = OpSpec((1, a), {"status": "x", "rt": "01"}, ())
    put2 = OpSpec((2, b), {"status": "y"}, ((1, a),))
    put3 = OpSpec((2, a), {"status": "z"}, ((1, a),))
    delete = OpSpec((3, a), None, ((2, a),))
    assert expected([put1, put2]) == ({"status": "y", "rt": "01"}, False, {})
    visible, deleted, conflicts = expected([put1, put2, put3])
    assert visible["status"] == "y" and not deleted  # (2, b) > (2, a)
    assert conflicts == {"status": [((2, b), "y"), ((2, a), "z")]}
    visible, deleted, conflicts = expected([put1, put3, delete])
    assert deleted and visible == {}
    assert conflicts == {ALL: [((3, a), None)]}  # rt=01 of put1 outlived the delete


# -- convergence across devices ------------------------------------------------------------

PARTITIONS = ("mimika/jila/tps-001", "mimika/jila/tps-002")
KEYS = ("v-1", "v-2")
DEVICE = st.integers(0, 3)
PUT = st.tuples(st.just("put"), DEVICE, st.sampled_from(PARTITIONS), st.sampled_from(KEYS),
                FIELD_MAPS)
DELETE = st.tuples(st.just("delete"), DEVICE, st.sampled_from(PARTITIONS),
                   st.sampled_from(KEYS))
SYNC = st.tuples(st.just("sync"), DEVICE, DEVICE)
TICK = st.tuples(st.just("tick"), DEVICE,
                 st.sampled_from([-DAY_MS, -1, 1, 1_000, HOUR_MS, 3 * DAY_MS]))
# Mostly edits, so that devices diverge between syncs (concurrent edits, delete vs edit).
STEPS = st.lists(st.one_of(PUT, PUT, PUT, DELETE, SYNC, SYNC, TICK), min_size=12, max_size=40)
CLOCK_OFFSETS = st.sampled_from([0, 0, 1, 5_000, -2 * DAY_MS, 2 * DAY_MS])


def run_steps(devices: Sequence[Device], steps: list[tuple[Any, ...]]) -> None:
    n = len(devices)
    for step in steps:
        kind, who = step[0], devices[step[1] % n]
        if kind == "put":
            who.put("voters", step[3], step[4], partition=step[2])
        elif kind == "delete":
            with contextlib.suppress(NotFoundError):  # nothing to delete there (yet)
                who.delete("voters", step[3], partition=step[2])
        elif kind == "sync":
            exchange(who, devices[step[2] % n])
        else:
            who.clock.advance(step[2])


def feeds_of(devices: Iterable[Device]) -> dict[FeedId, list[Change]]:
    """Every change any device holds, per feed in seq order (checking there is no fork)."""
    held: dict[FeedId, dict[int, Change]] = {}
    for device in devices:
        for change in all_changes(device):
            other = held.setdefault(change.feed, {}).setdefault(change.seq, change)
            assert other.hash == change.hash, "honest devices never fork"
    return {feed: [by_seq[s] for s in sorted(by_seq)] for feed, by_seq in sorted(held.items())}


def delivery_plan(feeds: dict[FeedId, list[Change]], rng: random.Random
                  ) -> tuple[list[list[Change]], int]:
    """Batches delivering every change at least once, in seq order within each feed.

    Feeds interleave at random; chunks may overlap what came before, old chunks are
    re-delivered, and some batches run ahead of the feed (a gap) and must be refused.
    Returns the batches and the number of changes sent ahead of their feed.
    """
    cursor = dict.fromkeys(feeds, 0)
    pending = list(feeds)
    sent: list[list[Change]] = []
    batches: list[list[Change]] = []
    batch: list[Change] = []
    ahead = 0
    while pending:
        feed = rng.choice(pending)
        chain, at = feeds[feed], cursor[feed]
        if at + 1 < len(chain) and rng.random() < 0.15:
            early = chain[at + 1:rng.randint(at + 2, len(chain))]
            batches.append(early)  # its own batch: a gap refuses it all
            ahead += len(early)
        chunk = chain[rng.randint(max(0, at - 2), at):rng.randint(at + 1, len(chain))]
        cursor[feed] = chunk[-1].seq
        if cursor[feed] == len(chain):
            pending.remove(feed)
        sent.append(chunk)
        batch += chunk
        if rng.random() < 0.3:
            batch += rng.choice(sent)  # a duplicate of something already sent
        if rng.random() < 0.5:
            batches.append(batch)
            batch = []
    batches.append(batch)
    return batches, ahead


def check_against_oracle(node: Node, feeds: dict[FeedId, list[Change]]) -> None:
    ops: dict[tuple[str, str], list[OpSpec]] = {}
    for chain in feeds.values():
        for change in chain:
            for i, op in enumerate(change.ops):
                fields = None if isinstance(op, Delete) else op.fields
                spec = OpSpec(change.op_id(i), fields, op.pred)
                ops.setdefault((change.partition, op.key), []).append(spec)
    records = {(r.partition, r.key): r for r in node.records("voters", include_deleted=True)}
    assert sorted(records) == sorted(ops)
    for rkey, specs in ops.items():
        visible, deleted, conflicts = expected(specs)
        record = records[rkey]
        assert (record.fields, record.deleted) == (visible, deleted), rkey
        got = {name: [(v.hlc, v.author, v.value) for v in versions]
               for name, versions in record.conflicts.items()}
        want = {name: [(op[0], device_id(op[1]), value) for op, value in versions]
                for name, versions in conflicts.items()}
        assert got == want, rkey


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(n_devices=st.integers(3, 4), offsets=st.lists(CLOCK_OFFSETS, min_size=4, max_size=4),
       steps=STEPS, data=st.data())
def test_devices_converge_whatever_the_delivery_order(n_devices: int, offsets: list[int],
                                                      steps: list[tuple[Any, ...]],
                                                      data: st.DataObject) -> None:
    devices = [Device.memory(f"phone-{i}") for i in range(n_devices)]
    for device, offset in zip(devices, offsets, strict=False):
        device.clock.advance(offset)
    fresh = [Device.memory("replica-mem"), Device.sqlite("replica-sqlite")]
    try:
        run_steps(devices, steps)
        feeds = feeds_of(devices)
        total = sum(len(chain) for chain in feeds.values())
        for replica in devices + fresh:
            rng = data.draw(st.randoms(use_true_random=False), label=f"order {replica.name}")
            batches, ahead = delivery_plan(feeds, rng)
            report = deliver(replica, batches)
            assert all(r.stage == "hash chain" for r in report.refused)
            if replica in fresh:
                assert len(report.refused) == ahead
                assert report.applied == total
        states = {d.name: d.canonical_state() for d in devices + fresh}
        assert len(set(states.values())) == 1, sorted(states)
        vectors = [d.version_vector() for d in devices + fresh]
        assert all(v == vectors[0] for v in vectors)
        assert sum(vectors[0].values()) == total
        check_against_oracle(fresh[1].node, feeds)
    finally:
        for device in devices + fresh:
            device.close()


def test_a_batch_ahead_of_its_feed_is_refused_then_healed() -> None:
    a, b = Device.memory("phone-A"), Device.memory("phone-B")
    for i in range(3):
        a.put("voters", "v-1", {"status": f"s{i}"})
    changes = all_changes(a)
    report = b.receive(changes[1:])
    assert (report.applied, len(report.refused)) == (0, 2)
    assert [r.stage for r in report.refused] == ["hash chain", "hash chain"]
    assert b.get("voters", "v-1") is None
    assert b.version_vector() == {}
    report = b.receive(changes)
    assert report.applied == 3
    assert b.canonical_state() == a.canonical_state()
