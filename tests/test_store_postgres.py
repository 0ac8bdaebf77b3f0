"""PostgresStore: the storage conformance suite, then what only PostgreSQL has: SQL
views and documented queries, races between stores sharing one database, several
processes ingesting at once, and migrations started by several processes."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import START_MS, FakeClock, device_key
from hypothesis import given
from hypothesis import strategies as st
from store_conformance import StoreConformance

from meshsync.model import codec
from meshsync.model.change import Change, canonical_put, sign_change
from meshsync.model.errors import ConcurrentAppendError, StorageError, UsageError
from meshsync.model.hlc import make as make_hlc
from meshsync.replica.crdt import RecordState
from meshsync.replica.node import Node
from meshsync.replica.records import Record
from meshsync.store import MemoryStore
from meshsync.store.base import RecordRow, Store, StoredChange
from meshsync.store.pg_text import escape, fields_json, fields_jsonb, unescape, visible_fields

if TYPE_CHECKING:
    from pg import PgServer

pytest_plugins = ["pg"]  # fixtures pg_server, pg_dsn (imported by pytest, not here)
try:
    import psycopg
except ImportError:
    if os.environ.get("MESHSYNC_TEST_PG_REQUIRED") == "1":
        raise
    pytest.skip("psycopg is not installed (pip install -e '.[central]')",
                allow_module_level=True)

from meshsync.store import pg_schema, pg_write  # noqa: E402
from meshsync.store.pg_schema import MIGRATIONS  # noqa: E402
from meshsync.store.postgres import PostgresStore  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "central-sql.md"
TPS1, TPS2 = "mimika/jila/diloa/tps-001", "mimika/jila/diloa/tps-002"
TPS3 = "mimika/jila/jila-kota/tps-001"
FEED = (b"\x0a" * 32, TPS1)
CENTRAL_NOW = START_MS + 86_400_000


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def make_store(self, pg_server: PgServer) -> Iterator[Callable[[], Store]]:
        made: list[tuple[Store, str]] = []

        def make() -> Store:
            schema = pg_server.new_schema()
            made.append((PostgresStore(pg_server.dsn_for(schema)), schema))
            return made[-1][0]

        yield make
        for store, schema in made:
            store.close()
            pg_server.drop_schema(schema)


# -- helpers -----------------------------------------------------------------------------


def signed_puts(name: str, partition: str, keys: list[str], **extra: Any) -> list[Change]:
    """One signed single-put change per key, chained, by device ``name``."""
    key, prev, out = device_key(name), b"", []
    for seq, k in enumerate(keys, 1):
        op = canonical_put("voters", k, {"nama": f"Contoh {k}", "oleh": name, **extra})
        change = sign_change(key, partition, seq, prev, make_hlc(START_MS + seq), (op,))
        out.append(change)
        prev = change.hash
    return out


def signed_batches(name: str, partition: str, keys: list[str], per: int) -> list[Change]:
    """Changes of ``per`` puts each (the receiver loads their records in one batch)."""
    key, prev, out = device_key(name), b"", []
    for seq, i in enumerate(range(0, len(keys), per), 1):
        ops = tuple(canonical_put("voters", k, {"nama": f"Contoh {k}", "oleh": name})
                    for k in keys[i:i + per])
        change = sign_change(key, partition, seq, prev, make_hlc(START_MS + 1000 * seq), ops)
        out.append(change)
        prev = change.hash
    return out


def central(store: Store) -> Node:
    return Node(store, device_key("central"), FakeClock(CENTRAL_NOW))


def stored(seq: int, tag: bytes = b"") -> StoredChange:
    return StoredChange(seq, bytes([seq]) * 31 + tag[:1].ljust(1, b"h"), b"body" + tag, b"s" * 64)


def sql(dsn: str, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode(), args)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def two_stores(pg_dsn: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    yield a, b
    a.close()
    b.close()


# -- text escape and jsonb projection ------------------------------------------------------


@given(st.lists(st.text(alphabet=st.sampled_from("\x00\x01\x02ab\u2019"), max_size=8),
                min_size=2, max_size=6))
def test_escape_round_trips_and_keeps_order(texts: list[str]) -> None:
    for t in texts:
        assert unescape(escape(t)) == t
        assert "\x00" not in escape(t)
    assert sorted(escape(t) for t in texts) == [escape(t) for t in sorted(texts)]


@given(st.lists(st.tuples(st.booleans(), st.sets(st.sampled_from("abc"), min_size=1),
                          st.integers(0, 5), st.sampled_from([b"\x01" * 32, b"\x02" * 32]),
                          st.sets(st.integers(0, 20), max_size=3)), max_size=12))
def test_visible_fields_reads_the_state_as_the_crdt_does(
        ops: list[tuple[bool, set[str], int, bytes, set[int]]]) -> None:
    state, ids = RecordState(), []
    for n, (is_put, names, hlc, author, preds) in enumerate(ops):
        op_id, pred = (hlc * 100 + n, author), tuple(ids[i] for i in preds if i < len(ids))
        if is_put:
            state.apply_put(op_id, {name: f"{name}{n}" for name in names}, pred)
        else:
            state.apply_delete(op_id, pred)
        ids.append(op_id)
    if not state.deleted:
        assert visible_fields(state.encode()) == state.visible()


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text()
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3), max_leaves=8)


@given(st.dictionaries(st.text(max_size=6), _VALUES, max_size=6))
def test_fields_json_is_the_documented_json(fields: dict[str, Any]) -> None:
    """The fast encoder writes what json.dumps with the documented conversions writes."""
    def reference(value: Any) -> Any:
        if isinstance(value, str):
            return escape(value)
        if isinstance(value, bytes):
            import base64
            return base64.b64encode(value).decode()
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, list):
            return [reference(v) for v in value]
        if isinstance(value, dict):
            return {escape(k): reference(v) for k, v in value.items()}
        return value

    state = codec.pack([b"\x01" * 32, 5, fields])  # the compact single-put state
    text = fields_json(state, False)
    assert text is not None and json.loads(text) == reference(fields)
    assert fields_jsonb(state, False) == b"\x01" + text.encode()
    assert fields_json(state, True) == "{}" and fields_jsonb(b"junk", False) is None
    plain = {"nama": "Ma\u2019ruf", "rt": 17, "skor": 1.5, "ktp_el": True, "x": None}
    assert fields_json(codec.pack([b"\x01" * 32, 5, plain]), False) == json.dumps(
        plain, ensure_ascii=False, separators=(",", ":"))


def test_record_fields_are_queryable_jsonb(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    node = central(store)
    fields = {"nama": "Ma\u2019ruf Contoh", "foto": b"\x00\xff\x10", "skor": math.nan,
              "batas": -math.inf, "besar": 2**64 - 1, "kosong": None,
              "isi": {"a\x00b": ["x\x00y", b"\x01", 1.5, True]}}
    node.put("voters", "v-0001", fields, partition=TPS1)
    node.put("voters", "v-0002", {"nama": "Yosina"}, partition=TPS1)
    node.delete("voters", "v-0002", partition=TPS1)
    [(got, deleted)] = sql(pg_dsn, "SELECT fields, deleted FROM meshsync_records_current "
                                   "WHERE key = 'v-0001'")
    assert not deleted
    assert got == {"nama": "Ma\u2019ruf Contoh", "foto": "AP8Q", "skor": "NaN",
                   "batas": "-Infinity", "besar": 2**64 - 1, "kosong": None,
                   "isi": {"a\x01\x01b": ["x\x01\x01y", "AQ==", 1.5, True]}}
    assert sql(pg_dsn, "SELECT decode(fields->>'foto', 'base64') FROM meshsync_records "
                       "WHERE key = 'v-0001'") == [(b"\x00\xff\x10",)]
    assert sql(pg_dsn, "SELECT fields, deleted FROM meshsync_records_current "
                       "WHERE key = 'v-0002'") == [({}, True)]
    store.close()


def test_fields_follow_the_merge_and_conflicts_are_flagged(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    node = central(store)
    a = signed_puts("phone-A", TPS1, ["v-0001"], status="pindah")
    b = signed_puts("phone-B", TPS1, ["v-0001"], status="tidak ditemukan")
    node.receive(a + b)
    reference = central(MemoryStore())
    reference.receive(b + a)
    want = reference.get("voters", "v-0001")
    assert want is not None and want.conflicts
    [(fields, conflict)] = sql(pg_dsn, "SELECT fields, conflict FROM meshsync_records_current")
    assert conflict is True
    assert fields == want.fields
    assert Record.from_row(store.find_record("voters", "v-0001")[0]) == want
    store.close()


# -- the documented SQL ------------------------------------------------------------------


def doc_queries() -> dict[str, str]:
    """``-- query: NAME`` blocks of docs/central-sql.md."""
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    out = {}
    for block in blocks:
        m = re.match(r"-- query: (\S+)\n", block)
        assert m, f"every SQL block in {DOC.name} is named: {block[:40]!r}"
        out[m.group(1)] = block
    return out


def test_documented_queries_return_current_fields_and_counts(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    node = central(store)
    node.receive(signed_puts("phone-A", TPS1, ["v-0001", "v-0002", "v-0003"]))
    node.receive(signed_puts("phone-B", TPS2, ["v-0001", "v-0004"]))
    node.receive(signed_puts("phone-C", TPS3, ["v-0005"]))
    node.put("voters", "v-0001", {"status": "pindah"}, partition=TPS1)
    node.delete("voters", "v-0003", partition=TPS1)
    node.receive(signed_puts("phone-D", TPS2, ["v-0004"], nama="Contoh Lain"))  # conflict
    q = doc_queries()
    assert set(q) >= {"record-fields", "counts-per-partition", "progress-per-village"}

    fields = {r.partition: r.fields for r in node.records("voters") if r.key == "v-0001"}
    got = sql(pg_dsn, q["record-fields"])
    assert {p: f for p, f, _, _ in got} == fields
    assert fields[TPS1] == {"nama": "Contoh v-0001", "oleh": "phone-A", "status": "pindah"}
    assert sql(pg_dsn, q["record-field"]) == [(TPS1, "Contoh v-0001", "pindah"),
                                              (TPS2, "Contoh v-0001", None)]
    assert sql(pg_dsn, q["search-by-field"]) == [(TPS1, "v-0001", "Contoh v-0001")]
    assert sql(pg_dsn, q["counts-per-partition"]) == [
        (TPS1, 3, 2, 1, 0), (TPS2, 2, 2, 0, 1), (TPS3, 1, 1, 0, 0)]
    assert sql(pg_dsn, q["progress-per-village"]) == [
        ("mimika/jila/diloa", 5, 4, 1, 1), ("mimika/jila/jila-kota", 1, 1, 0, 0)]
    assert sql(pg_dsn, q["total-under-prefix"]) == [(6, 1)]
    winner = node.get("voters", "v-0004", TPS2)
    assert winner is not None and winner.conflicts  # "Contoh v-0004" vs "Contoh Lain"
    assert sql(pg_dsn, q["conflicts-in-village"]) == [(TPS2, "v-0004", winner.fields["nama"])]
    feeds = sql(pg_dsn, q["feeds"])
    assert len(feeds) == 5
    assert {(p, n) for _, p, n, _ in feeds} == {
        (TPS1, 3), (TPS2, 2), (TPS3, 1), (TPS2, 1), (TPS1, 2)}
    assert all(at.year >= 2024 for *_, at in feeds)
    store.close()


# -- races between two stores on one database ----------------------------------------------


def test_same_append_by_two_stores_loser_fails_cleanly(
        two_stores: tuple[PostgresStore, PostgresStore], pg_dsn: str) -> None:
    a, b = two_stores
    for first_seq in (1, 2):  # a new feed (insert race), then an existing one (head race)
        with pytest.raises(ConcurrentAppendError, match="another process"), b.transaction():
            b.append_change(FEED, stored(first_seq), first_seq)
            with a.transaction():
                a.append_change(FEED, stored(first_seq), first_seq)
        assert b.feed_head(FEED).head_seq == first_seq  # type: ignore[union-attr]
    assert sql(pg_dsn, "SELECT seq FROM meshsync_changes ORDER BY seq") == [(1,), (2,)]
    with b.transaction():  # the loser is usable again and sees the winner's work
        assert b.feed_head(FEED).head_seq == 2  # type: ignore[union-attr]
        b.append_change(FEED, stored(3), 3)
    assert a.count_changes() == 3


def test_a_flush_blocked_by_the_winner_fails_when_it_commits(
        two_stores: tuple[PostgresStore, PostgresStore], pg_dsn: str) -> None:
    a, b = two_stores
    with a.transaction():
        a.append_change(FEED, stored(1), 1)
    outcome: list[BaseException | None] = []

    def loser() -> None:
        try:
            with b.transaction():
                assert b.feed_head(FEED).head_seq == 1  # type: ignore[union-attr]
                b.append_change(FEED, stored(2, b"b"), 2)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with a.transaction():
        a.append_change(FEED, stored(2), 2)
        a.flush()  # holds the feed row locked until commit
        thread = threading.Thread(target=loser)
        thread.start()
        deadline = time.monotonic() + 10
        while not sql(pg_dsn, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = "
                              "'Lock' AND application_name = 'meshsync'"):
            assert time.monotonic() < deadline, "the second store never waited"
            time.sleep(0.02)
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrentAppendError)
    assert sql(pg_dsn, "SELECT seq, body FROM meshsync_changes ORDER BY seq") == [
        (1, b"body"), (2, b"body")]


@pytest.mark.parametrize("read", ["load_record", "load_records", "before the transaction"])
def test_a_lost_record_update_is_refused(
        two_stores: tuple[PostgresStore, PostgresStore], read: str) -> None:
    a, b = two_stores
    rkey = (TPS1, "voters", "v-0001")

    def row(state: bytes) -> RecordRow:
        return RecordRow(*rkey, state, False, False)

    for existing in (False, True):  # the row is inserted, then updated, under b's feet
        if read == "before the transaction":
            b.load_record(*rkey)  # as Node.write does
        with pytest.raises(ConcurrentAppendError), b.transaction():
            if read == "load_record":
                assert (b.load_record(*rkey) is not None) == existing
            elif read == "load_records":
                assert (rkey in b.load_records([rkey, rkey])) == existing
            with a.transaction():
                a.load_record(*rkey)
                a.save_record(row(b"a" + bytes([existing])))
            b.save_record(row(b"b"))
    assert a.load_record(*rkey) == row(b"a\x01")
    assert b.load_records([rkey, (TPS2, "voters", "v-0001")]) == {rkey: row(b"a\x01")}


def test_one_lost_update_among_many_refuses_the_whole_flush(
        two_stores: tuple[PostgresStore, PostgresStore], pg_dsn: str) -> None:
    a, b = two_stores
    rows = [RecordRow(TPS1, "voters", f"v-{i}", b"s0", False, False) for i in range(5)]
    with a.transaction():
        a.save_records(rows)
    with pytest.raises(ConcurrentAppendError, match="1 of the 5 records"), b.transaction():
        keys = [(r.partition, r.collection, r.key) for r in rows]
        assert b.load_records(keys) == dict(zip(keys, rows, strict=True))
        with a.transaction():
            a.load_record(TPS1, "voters", "v-3")
            a.save_record(RecordRow(TPS1, "voters", "v-3", b"a1", False, False))
        b.save_records([RecordRow(TPS1, "voters", f"v-{i}", b"b1", False, False)
                        for i in range(5)])
    assert sql(pg_dsn, "SELECT key, state, version FROM meshsync_records ORDER BY key") == [
        ("v-0", b"s0", 1), ("v-1", b"s0", 1), ("v-2", b"s0", 1), ("v-3", b"a1", 2),
        ("v-4", b"s0", 1)]


def test_a_caught_conflict_still_rolls_back(
        two_stores: tuple[PostgresStore, PostgresStore], pg_dsn: str) -> None:
    a, b = two_stores
    with pytest.raises(ConcurrentAppendError, match="caught and ignored"), b.transaction():
        b.append_change(FEED, stored(1, b"b"), 1)
        b.set_meta("hlc", b"\x01")
        with a.transaction():
            a.append_change(FEED, stored(1), 1)
        with pytest.raises(ConcurrentAppendError):
            b.flush()
        b.set_meta("other", b"\x02")  # the caller carries on regardless
    assert sql(pg_dsn, "SELECT count(*) FROM meshsync_meta") == [(0,)]
    assert sql(pg_dsn, "SELECT body FROM meshsync_changes") == [(b"body",)]


def test_a_rolled_back_ingest_can_simply_run_again(
        two_stores: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two_stores
    changes = signed_puts("phone-A", TPS1, [f"v-{i:04d}" for i in range(30)])
    node_a, node_b = central(a), central(b)
    node_a.receive(changes[:10])
    with pytest.raises(ConcurrentAppendError), b.transaction():
        node_b.receiver("gateway").receive(changes[:20])
        node_a.receive(changes[:20])
    report = node_b.receive(changes)
    assert (report.applied, report.duplicates, report.refused) == (10, 20, [])
    assert node_a.canonical_state() == node_b.canonical_state()


def test_large_ingest_flushes_in_batches_and_matches_memory(
        pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_write, "MAX_PENDING_ROWS", 40)
    monkeypatch.setattr(pg_write, "MAX_CACHED_ROWS", 60)
    keys = [f"v-{i:04d}" for i in range(150)]
    changes = (signed_puts("phone-A", TPS1, keys) + signed_puts("phone-B", TPS1, keys[::-1])
               + signed_puts("phone-C", TPS2, keys[:50], status="ms")
               + signed_batches("phone-D", TPS1, keys[::3], per=7)
               + signed_batches("phone-E", TPS3, keys, per=9))
    store = PostgresStore(pg_dsn)
    node, reference = central(store), central(MemoryStore())
    with store.transaction():  # one transaction, many flushes and cache evictions
        receiver = node.receiver("bundle")
        for i, change in enumerate(changes):
            receiver.receive_one(change)
            if i % 70 == 69:
                receiver.flush()
        receiver.flush()
    reference.receive(changes)
    assert node.canonical_state() == reference.canonical_state()
    assert store.count_changes() == len(changes)
    got = dict(sql(pg_dsn, "SELECT partition || ' ' || key, fields FROM meshsync_records"))
    assert got == {f"{r.partition} {r.key}": r.fields for r in reference.records("voters")}
    store.close()


def test_reads_see_flushed_and_buffered_writes_of_their_transaction(
        pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends and saves are sent in bulk; every read in the transaction still sees
    them, whether already sent or still buffered, and a bad append is still refused."""
    monkeypatch.setattr(pg_write, "MAX_PENDING_ROWS", 5)
    store = PostgresStore(pg_dsn)
    rows = [RecordRow(TPS1, "voters", f"v-{i}", codec.pack([b"\x01" * 32, i, {"n": i}]),
                      False, False) for i in range(7)]
    with store.transaction():
        for seq in range(1, 8):  # five are sent at the fifth, two stay buffered
            store.append_change(FEED, stored(seq), seq)
        assert store._buf.n_changes == 2
        for bad in (9, 7, 1):
            with pytest.raises(UsageError, match="does not follow the feed head 7"):
                store.append_change(FEED, stored(bad), bad)
        assert store.feed_head(FEED).head_seq == 7  # type: ignore[union-attr]
        assert store.change_at(FEED, 2) == stored(2) and store.change_at(FEED, 7) == stored(7)
        assert store.change_at(FEED, 8) is None
        assert [c.seq for c in store.iter_changes(FEED, 3)] == [4, 5, 6, 7]
        assert store.count_changes() == 7
        store.save_records(rows[:5])  # sent at the fifth row
        store.save_record(rows[5])  # buffered
        assert len(store._buf.dirty) == 1
        assert store.load_record(TPS1, "voters", "v-5") == rows[5]
        assert store.load_records([(TPS1, "voters", "v-0"), (TPS1, "voters", "v-6")]) == {
            (TPS1, "voters", "v-0"): rows[0]}
        assert store.find_record("voters", "v-5") == [rows[5]]
        assert list(store.iter_records("voters")) == rows[:6]
        store.save_record(RecordRow(TPS1, "voters", "v-0", b"x", True, False))  # sent row
        assert store.load_record(TPS1, "voters", "v-0").state == b"x"  # type: ignore[union-attr]
    assert sql(pg_dsn, "SELECT count(*) FROM meshsync_changes") == [(7,)]
    assert sql(pg_dsn, "SELECT key, fields, version FROM meshsync_records ORDER BY key") == [
        ("v-0", {}, 2), ("v-1", {"n": 1}, 1), ("v-2", {"n": 2}, 1), ("v-3", {"n": 3}, 1),
        ("v-4", {"n": 4}, 1), ("v-5", {"n": 5}, 1)]
    store.close()


def test_a_version_1_database_is_upgraded(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 2 drops the changes' foreign key; what was stored before is kept."""
    fks = ("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
           "AND conrelid = 'meshsync_changes'::regclass")
    monkeypatch.setattr(pg_schema, "MIGRATIONS", MIGRATIONS[:1])
    old = PostgresStore(pg_dsn)
    assert old.schema_version == 1
    with old.transaction():
        old.append_change(FEED, stored(1), 1)
    old.close()
    assert sql(pg_dsn, fks) == [(1,)]
    monkeypatch.undo()
    store = PostgresStore(pg_dsn)
    assert store.schema_version == len(MIGRATIONS) >= 2
    assert sql(pg_dsn, fks) == [(0,)]
    with store.transaction():
        store.append_change(FEED, stored(2), 2)
    assert [c.seq for c in store.iter_changes(FEED)] == [1, 2]
    store.close()


# -- several processes ---------------------------------------------------------------------

SHARED_KEYS = [f"v-{i:04d}" for i in range(120)]


def _ingest(dsn: str, own: str, barrier: Any, results: Any) -> None:
    """Child process: ingest the shared feed and its own feed, retrying lost races."""
    shared = signed_puts("phone-shared", TPS1, SHARED_KEYS)
    mine = signed_puts(own, TPS1, SHARED_KEYS[40:] + [f"{own}-{i}" for i in range(40)])
    store = PostgresStore(dsn)
    node = central(store)
    applied = duplicates = retries = 0
    barrier.wait()
    for i in range(0, len(shared), 8):
        batch = shared[i:i + 8] + mine[i:i + 8]
        while True:
            try:
                report = node.receive(batch, source=own)
                break
            except ConcurrentAppendError:
                retries += 1
        applied, duplicates = applied + report.applied, duplicates + report.duplicates
    store.close()
    results.put((own, applied, duplicates, retries))


def _open(dsn: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    store = PostgresStore(dsn)
    results.put(store.schema_version)
    store.close()


def _run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(args)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return out


@pytest.mark.slow
def test_two_processes_ingest_same_and_different_feeds(pg_dsn: str) -> None:
    PostgresStore(pg_dsn).close()  # migrate first: this test is about ingest
    results = _run_processes(_ingest, [(pg_dsn, "phone-1"), (pg_dsn, "phone-2")])
    applied = sum(r[1] for r in results)
    duplicates = sum(r[2] for r in results)
    print("retries per process:", {r[0]: r[3] for r in results})
    everything = (signed_puts("phone-shared", TPS1, SHARED_KEYS)
                  + [c for own in ("phone-1", "phone-2") for c in signed_puts(
                      own, TPS1, SHARED_KEYS[40:] + [f"{own}-{i}" for i in range(40)])])
    assert applied == len(everything)  # each change applied by exactly one process
    assert duplicates == len(SHARED_KEYS)  # the other one found it already held
    assert sql(pg_dsn, "SELECT count(*), count(DISTINCT (feed, seq)) FROM meshsync_changes") == [
        (len(everything), len(everything))]
    per_feed = sql(pg_dsn, "SELECT f.head_seq, f.head_hash, count(c.seq), min(c.seq), "
                           "max(c.seq), (array_agg(c.hash ORDER BY c.seq DESC))[1] "
                           "FROM meshsync_feeds f JOIN meshsync_changes c ON c.feed = f.id "
                           "GROUP BY f.id")
    assert sorted(n for n, *_ in per_feed) == [120, 120, 120]
    for head, head_hash, count, low, high, last_hash in per_feed:  # no gap, head matches
        assert (count, low, high, head_hash) == (head, 1, head, last_hash)
    assert sql(pg_dsn, "SELECT count(*) FROM meshsync_refusals") == [(0,)]
    reference = central(MemoryStore())
    reference.receive(everything)
    want = {(r.partition, r.key): r.state for r in reference.store.iter_records()}
    got = {(p, k): bytes(s) for p, k, s in sql(
        pg_dsn, "SELECT partition, key, state FROM meshsync_records")}
    assert got == want  # no record misses a change the other process applied
    # both processes' progress counts (meshsync.store.pg_progress) add up to a recount
    assert sql(pg_dsn, "SELECT count(*) FROM meshsync_records WHERE label IS NULL") == [(0,)]
    assert sql(pg_dsn, "SELECT partition, label, done, deleted, conflict, n "
                       "FROM meshsync_progress_counts ORDER BY 1, 2, 3, 4, 5") == sql(
        pg_dsn, "SELECT partition, label, done, deleted, conflict, count(*) FROM "
                "meshsync_records GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5")


@pytest.mark.slow
def test_migrations_run_once_when_processes_start_together(pg_dsn: str) -> None:
    versions = _run_processes(_open, [(pg_dsn,)] * 4)
    assert versions == [len(MIGRATIONS)] * 4
    assert sql(pg_dsn, "SELECT version FROM meshsync_schema ORDER BY version") == [
        (v,) for v in range(1, len(MIGRATIONS) + 1)]
    PostgresStore(pg_dsn).close()
    assert sql(pg_dsn, "SELECT count(*) FROM meshsync_schema") == [(len(MIGRATIONS),)]
    assert sql(pg_dsn, "SELECT count(*) FROM pg_views WHERE viewname LIKE 'meshsync_%' "
                       "AND schemaname = current_schema()") == [(5,)]  # + coklit (4), counts (7)


# -- opening, errors -------------------------------------------------------------------------


def test_newer_schema_is_refused(pg_dsn: str) -> None:
    PostgresStore(pg_dsn).close()
    sql(pg_dsn, "INSERT INTO meshsync_schema (version) VALUES (99)")
    with pytest.raises(StorageError, match="newer than this meshsync"):
        PostgresStore(pg_dsn)


def test_unreachable_server_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        PostgresStore(f"host={tmp_path} port=1 connect_timeout=2")


def test_use_after_close_is_refused(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    store.close()
    with pytest.raises(UsageError, match="closed"):
        store.feeds()


def test_a_dropped_connection_is_reopened(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    with store.transaction():
        store.set_meta("hlc", b"\x01")
    pid = store._conn.info.backend_pid
    sql(pg_dsn, "SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(StorageError):
        store.get_meta("hlc")
    assert store.get_meta("hlc") == b"\x01"
    store.close()


def test_phones_never_import_psycopg() -> None:
    code = ("import sys, meshsync, meshsync.store, meshsync.replica.node, "
            "meshsync.protocol.bundle, meshsync.host.local, meshsync.model.errors; "
            "sys.exit(any(m.split('.')[0] == 'psycopg' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_two_processes_storing_receipts_lose_none(pg_dsn: str) -> None:
    """Two central processes on one database: receipts of different issuers written
    at the same time both survive (the receipts row is locked, not last-writer-wins)."""
    import threading

    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    try:
        with a.transaction():
            assert a.put_receipt(b"\x01" * 32, "mimika/jila", 1, b"receipt-of-one")
            done = threading.Event()

            def other() -> None:
                with b.transaction():
                    b.put_receipt(b"\x02" * 32, "mimika/jila", 1, b"receipt-of-two")
                done.set()

            thread = threading.Thread(target=other)
            thread.start()
            assert not done.wait(0.5), "the second writer must wait for the first"
        thread.join(10)
        assert done.is_set()
        assert sorted(a.receipts()) == [b"receipt-of-one", b"receipt-of-two"]
    finally:
        a.close()
        b.close()
