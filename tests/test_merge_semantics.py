"""Concrete merge scenarios between devices (docs/architecture.md §4; field failures B07, B10).

Every scenario runs on a memory and on a SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import DAY_MS, HOUR_MS, START_MS, Device, exchange, sync

from meshsync.model.errors import UsageError
from meshsync.model.limits import MAX_CLOCK_DRIFT_MS
from meshsync.replica.crdt import ALL, RecordState

MakeDevice = Callable[..., Device]


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(make_device: MakeDevice, kind: str) -> tuple[Device, Device]:
    """phone-A and phone-B, same clock unless a test moves one."""
    return make_device("phone-A", kind), make_device("phone-B", kind)


def fields(device: Device, key: str, collection: str = "voters") -> dict[str, object]:
    record = device.get(collection, key)
    assert record is not None, f"{device} has no {collection}/{key}"
    return record.fields


def conflict_values(device: Device, key: str, name: str) -> list[object]:
    record = device.get("voters", key)
    assert record is not None
    return [v.value for v in record.conflicts.get(name, [])]


def open_conflicts(device: Device) -> dict[str, list[str]]:
    """Record key -> names of its conflicting fields, on ``device``."""
    return {r.key: sorted(r.conflicts) for r in device.conflicts()}


# -- causality beats clocks --------------------------------------------------------


def test_b07_edit_after_seeing_value_wins_despite_slow_clock(pair: tuple[Device, Device]) -> None:
    a, b = pair
    a.clock.now_ms = START_MS - 2 * HOUR_MS  # A runs 2 h behind real time
    b.clock.now_ms = START_MS + 30 * 60_000  # B runs 30 min ahead
    old = b.put("voters", "rec-0007", {"address": "RT 01"})
    sync(b, a)
    assert fields(a, "rec-0007") == {"address": "RT 01"}

    new = a.put("voters", "rec-0007", {"address": "RT 03"})
    # The fresh edit carries the *smaller* timestamp: only causality can make it win.
    assert new.hlc < old.hlc
    sync(a, b)
    for device in (a, b):
        assert fields(device, "rec-0007") == {"address": "RT 03"}
        assert device.conflicts() == []

    states = (a.canonical_state(), b.canonical_state())
    for _ in range(10):  # anti-entropy rounds: nothing more to send, nothing changes
        assert exchange(a, b).received == 0
        assert exchange(b, a).received == 0
    assert (a.canonical_state(), b.canonical_state()) == states
    assert a.canonical_state() == b.canonical_state()
    assert fields(b, "rec-0007") == {"address": "RT 03"}


def test_edit_by_device_two_days_behind_wins_on_both(pair: tuple[Device, Device]) -> None:
    a, b = pair
    a.clock.now_ms = START_MS + 2 * DAY_MS
    first = a.put("voters", "v-1", {"nama": "Yosina", "status": "terdaftar"})
    report = exchange(a, b)
    assert report.applied == 1
    assert len(report.clock_warnings) == 1  # B learns its clock is far off A's

    edit = b.put("voters", "v-1", {"status": "pindah"})
    assert edit.hlc < first.hlc  # B's stamp is far below A's ...
    back = exchange(b, a)
    assert back.applied == 1
    assert back.clock_warnings == []  # a clock behind is not a warning for A
    for device in (a, b):  # ... yet B's edit, made after seeing A's value, wins
        assert fields(device, "v-1") == {"nama": "Yosina", "status": "pindah"}
        assert device.conflicts() == []
    assert a.canonical_state() == b.canonical_state()


# -- concurrent edits of one field --------------------------------------------------


@pytest.mark.parametrize("skew_ms", [0, 5_000, -5_000, 3 * DAY_MS, -3 * DAY_MS])
def test_concurrent_edits_converge_to_greatest_op_id(pair: tuple[Device, Device],
                                                     skew_ms: int) -> None:
    a, b = pair
    a.put("voters", "v-2", {"status": "terdaftar"})
    sync(a, b)
    b.clock.advance(skew_ms)
    ca = a.put("voters", "v-2", {"status": "pindah"})
    cb = b.put("voters", "v-2", {"status": "meninggal"})
    if skew_ms == 0:
        assert ca.hlc == cb.hlc  # same timestamp: the author key breaks the tie
    winner, loser = ("pindah", "meninggal") if ca.op_id(0) > cb.op_id(0) else (
        "meninggal", "pindah")
    sync(a, b)
    for device in (a, b):
        assert fields(device, "v-2")["status"] == winner
        assert conflict_values(device, "v-2", "status") == [winner, loser]
        assert open_conflicts(device) == {"v-2": ["status"]}
    assert a.canonical_state() == b.canonical_state()


def test_conflict_listed_until_an_edit_that_saw_both(pair: tuple[Device, Device],
                                                     make_device: MakeDevice, kind: str) -> None:
    a, b = pair
    c = make_device("phone-C", kind)
    a.put("voters", "v-3", {"status": "terdaftar", "rt": "01"})
    sync(a, b)
    sync(a, c)
    a.put("voters", "v-3", {"status": "pindah"})
    b.put("voters", "v-3", {"status": "tidak ditemukan"})
    exchange(a, c)  # C sees only A's value
    sync(a, b)
    assert open_conflicts(a) == open_conflicts(b) == {"v-3": ["status"]}

    # C's edit supersedes A's value only; B's stays concurrent with it.
    assert open_conflicts(c) == {}
    c.put("voters", "v-3", {"status": "ms"})
    exchange(b, c)
    sync(c, a)
    sync(c, b)
    for device in (a, b, c):
        assert sorted(conflict_values(device, "v-3", "status")) == ["ms", "tidak ditemukan"]

    # Editing another field does not touch the conflict on "status".
    b.put("voters", "v-3", {"rt": "02"})
    sync(b, a)
    assert open_conflicts(a) == {"v-3": ["status"]}

    # An edit that saw every value resolves it, on every device after exchange.
    a.put("voters", "v-3", {"status": "pindah"})
    sync(a, b)
    sync(a, c)
    for device in (a, b, c):
        assert device.conflicts() == []
        assert fields(device, "v-3") == {"status": "pindah", "rt": "02"}
    assert a.canonical_state() == b.canonical_state() == c.canonical_state()


def test_b10_phone_merges_status_conflicts_once_everywhere(make_device: MakeDevice,
                                                            kind: str) -> None:
    a, b = make_device("phone-A", kind), make_device("phone-B", kind)
    gw, server = make_device("laptop-GW", kind), make_device("server", kind)
    a.put("voters", "rec-0077", {"status": "terdaftar", "phone": "0800-000-0001"})
    sync(a, b)
    a.clock.advance(HOUR_MS)
    b.clock.advance(2 * HOUR_MS)
    a.put("voters", "rec-0077", {"status": "pindah"})
    b.put("voters", "rec-0077", {"status": "tidak ditemukan", "phone": "0800-000-0002"})
    sync(a, b)
    exchange(b, gw)  # B carries A's changes too
    exchange(gw, server)

    statuses = set()
    for device in (a, b, gw, server):
        record = device.get("voters", "rec-0077")
        assert record is not None
        assert record.fields["phone"] == "0800-000-0002"
        statuses.add(record.fields["status"])
        assert list(record.conflicts) == ["status"]
        versions = record.conflicts["status"]
        assert sorted(v.value for v in versions) == ["pindah", "tidak ditemukan"]
        assert {v.author for v in versions} == {a.key.device_id, b.key.device_id}
        assert versions[0].hlc > versions[1].hlc  # winner first; B's clock is ahead
        assert len(device.conflicts()) == 1
    assert statuses == {"tidak ditemukan"}
    assert len({d.canonical_state() for d in (a, b, gw, server)}) == 1


# -- deletes --------------------------------------------------------------------------


@pytest.mark.parametrize("later", ["delete", "edit"])
def test_delete_versus_concurrent_edit(pair: tuple[Device, Device], later: str) -> None:
    a, b = pair
    a.put("voters", "v-4", {"nama": "Contoh", "status": "terdaftar"})
    sync(a, b)
    (a if later == "delete" else b).clock.advance(60_000)
    a.delete("voters", "v-4")
    b.put("voters", "v-4", {"status": "pindah"})
    sync(a, b)
    for device in (a, b):
        record = device.get("voters", "v-4")
        assert record is not None
        assert record.deleted is (later == "delete")
        # The delete superseded every value it saw; B's edit is concurrent with it.
        assert record.fields == ({} if later == "delete" else {"status": "pindah"})
        assert list(record.conflicts) == [ALL]
    assert a.canonical_state() == b.canonical_state()

    # An edit that saw both the delete and the edit settles it.
    b.put("voters", "v-4", {"status": "ms"})
    sync(a, b)
    for device in (a, b):
        assert device.conflicts() == []
        assert fields(device, "v-4") == {"status": "ms"}


def test_delete_then_put_that_saw_it_restores(pair: tuple[Device, Device]) -> None:
    a, b = pair
    a.put("voters", "v-5", {"nama": "Yosina", "status": "terdaftar"})
    sync(a, b)
    a.delete("voters", "v-5")
    sync(a, b)
    for device in (a, b):
        assert device.get("voters", "v-5").deleted  # type: ignore[union-attr]
        assert [r.key for r in device.records("voters")] == []
    b.put("voters", "v-5", {"status": "kembali"})
    sync(b, a)
    for device in (a, b):
        record = device.get("voters", "v-5")
        assert record is not None
        assert not record.deleted
        assert record.fields == {"status": "kembali"}  # the deleted values stay deleted
        assert record.conflicts == {}
        assert [r.key for r in device.records("voters")] == ["v-5"]
    assert a.canonical_state() == b.canonical_state()


def test_tombstones_never_expire(pair: tuple[Device, Device], make_device: MakeDevice,
                                 kind: str) -> None:
    a, b = pair
    stale = make_device("phone-C", kind)
    a.put("voters", "v-6", {"nama": "Contoh"})
    sync(a, b)
    sync(a, stale)  # C holds the old record, then goes offline for two years
    a.delete("voters", "v-6")
    sync(a, b)
    for device in (a, b, stale):
        device.clock.advance(2 * 365 * DAY_MS)
    for i in range(5):  # plenty of later activity on the same devices
        a.put("voters", f"other-{i}", {"nama": "X"})
        sync(a, b)

    sync(stale, a)
    sync(stale, b)
    for device in (a, b, stale):
        record = device.get("voters", "v-6")
        assert record is not None
        assert record.deleted
        row = device.store.load_record(record.partition, "voters", "v-6")
        assert row is not None
        assert RecordState.decode(row.state).tombs  # the tombstone is still held
    assert a.canonical_state() == b.canonical_state() == stale.canonical_state()


def test_duplicate_delivery_changes_nothing(pair: tuple[Device, Device]) -> None:
    a, b = pair
    a.put("voters", "v-7", {"nama": "Contoh"})
    a.put("voters", "v-7", {"status": "ms"})
    first = exchange(a, b)
    assert (first.applied, first.duplicates) == (2, 0)
    state = b.canonical_state()
    again = b.receive(list(a.changes_since({})))
    assert (again.received, again.applied, again.duplicates) == (2, 0, 2)
    assert b.canonical_state() == state == a.canonical_state()


def test_clock_far_ahead_does_not_let_a_stale_value_win(pair: tuple[Device, Device]) -> None:
    """A device whose clock is days ahead edits concurrently: it wins the tie-break
    (greatest HLC), but the honest device's *later* edit that saw it still wins."""
    a, b = pair
    a.clock.advance(5 * DAY_MS)
    a.put("voters", "v-8", {"status": "a"})
    b.put("voters", "v-8", {"status": "b"})
    sync(a, b)
    assert fields(b, "v-8")["status"] == "a"
    assert b.hlc.last <= (b.clock.now_ms + MAX_CLOCK_DRIFT_MS + 1) << 16
    b.put("voters", "v-8", {"status": "b2"})
    sync(a, b)
    for device in (a, b):
        assert fields(device, "v-8") == {"status": "b2"}
        assert device.conflicts() == []


def test_a_forked_feed_is_refused_with_evidence(make_device: MakeDevice, kind: str) -> None:
    """A phone restored from an old backup signs a second, different change at a seq
    it already used: the receiver keeps the first, refuses the second as a fork and
    keeps both as evidence; the record is not touched by the refused change."""
    a, b = make_device("phone-A", kind), make_device("phone-B", kind)
    first = a.put("voters", "v-9", {"status": "terdaftar"})
    exchange(a, b)
    restored = Device.memory("phone-A")  # same key, empty store: seq 1 again
    forked = restored.put("voters", "v-9", {"status": "pindah"})
    restored.close()
    assert (forked.seq, forked.author) == (first.seq, first.author)
    assert forked.hash != first.hash
    report = b.receive([forked])
    assert report.applied == 0
    assert [r.stage for r in report.refused] == ["fork"]
    [evidence] = b.store.forks()
    assert (evidence.seq, evidence.held_hash, evidence.other_body) == (1, first.hash,
                                                                      forked.body)
    assert fields(b, "v-9") == {"status": "terdaftar"}
    assert b.receive([forked]).refused  # refused again, evidence not duplicated
    assert len(b.store.forks()) == 1


# -- what a device may write, every receiver accepts ---------------------------------


def nested(depth: int) -> object:
    """A field value whose innermost (empty) list sits at ``depth`` (the field map is
    depth 0): the deepest container, with nothing below it."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_the_deepest_value_a_device_may_write_is_accepted_by_its_peers(
        pair: tuple[Device, Device]) -> None:
    a, b = pair
    a.put("voters", "v-deep", {"catatan": nested(15)})  # innermost list at depth 15
    report = exchange(a, b)
    assert report.applied == 1 and not report.refused
    assert fields(b, "v-deep") == {"catatan": nested(15)}
    # One level deeper is refused locally, as every receiver would refuse it.
    with pytest.raises(UsageError, match="nested too deeply"):
        a.put("voters", "v-deeper", {"catatan": nested(16)})
