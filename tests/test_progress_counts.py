"""Progress counts kept up to date on write (meshsync.store.sqlite_progress and
pg_progress) equal a full recount after any sequence of puts, deletes and merges,
in SQLite and PostgreSQL; old homes are counted by the migration and labelled again
once (meshsync.replica.progress.rebuild). All people are made up."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Device, exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshsync.coklit.visits import outcome

from meshsync.model.errors import NotFoundError
from meshsync.replica import progress as progress_mod
from meshsync.replica.progress import progress, recompute, register_classifier
from meshsync.store import MemoryStore, SQLiteStore, Store
from meshsync.store.sqlite import MIGRATIONS

if TYPE_CHECKING:
    from pg import PgServer

pytest_plugins = ["pg"]  # fixtures pg_server, pg_dsn

PARTS = ["mimika/jila/diloa/tps-001", "mimika/jila/diloa/tps-002",
         "mimika/agimuga/aramsolki/tps-001"]
KEYS = [f"v-{i}" for i in range(5)]
RESULTS = [None, "MS", "TMS", "ubah", "baru"]

register_classifier("voters", outcome)

STEP = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2),
              st.sampled_from(RESULTS), st.sampled_from([None, "MS", "TMS"])),
    st.tuples(st.just("delete"), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2)),
    st.tuples(st.just("sync"), st.integers(0, 3), st.integers(0, 3)),
)


def run(devices: list[Device], steps: list[tuple[Any, ...]]) -> None:
    """Apply ``steps``; device 3 is the store under test, 0-2 are phones in memory."""
    for step in steps:
        if step[0] == "put":
            _, who, key, part, result, status = step
            fields: dict[str, Any] = {"nama": f"Contoh {key}"}
            if result is not None:
                fields["coklit"] = result
            if status is not None:
                fields["status"] = status
            devices[who].put("voters", KEYS[key], fields, partition=PARTS[part])
        elif step[0] == "delete":
            _, who, key, part = step
            with contextlib.suppress(NotFoundError):  # absent or deleted already
                devices[who].delete("voters", KEYS[key], partition=PARTS[part])
        elif step[1] != step[2]:
            exchange(devices[step[1]], devices[step[2]])
        for d in devices:
            d.clock.advance(1000)
    for d in devices[:3]:
        exchange(d, devices[3])


def check(store: Store) -> None:
    """The stored counts (no relabelling) equal a full recount, per TPS, kampung and
    distrik; the newest result time is never older than the recount's."""
    assert store.get_meta(progress_mod.META_PREFIX + "voters") == \
        progress_mod.classifier_name("voters").encode()
    assert not [c for c in store.progress_counts("voters") if c.label == "" and not c.deleted]
    got, want = progress(store, "voters"), recompute(store, "voters")
    for level in ("tps", "village", "district"):
        assert got[level].keys() == want[level].keys()
        for name, row in want[level].items():
            mine = dict(got[level][name])
            last = mine.pop("last_done_ms")
            assert mine == {k: v for k, v in row.items() if k != "last_done_ms"}, name
            assert (last is None) == (row["last_done_ms"] is None)
            assert last is None or last >= row["last_done_ms"]


def check_steps(store: Store, steps: list[tuple[Any, ...]]) -> None:
    devices = [Device.memory(f"phone-{i}") for i in range(3)] + [Device("central", store)]
    progress(store, "voters")  # labels made by this classifier from here on
    run(devices, steps)
    check(store)
    assert store.progress_counts("voters", "mimika/jila") == [
        c for c in store.progress_counts("voters") if c.partition.startswith("mimika/jila/")]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(STEP, max_size=40))
def test_sqlite_counts_equal_a_recount(tmp_path: Path, steps: list[tuple[Any, ...]]) -> None:
    store = SQLiteStore(":memory:")
    try:
        check_steps(store, steps)
    finally:
        store.close()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(STEP, max_size=40))
def test_postgres_counts_equal_a_recount(pg_server: PgServer,
                                         steps: list[tuple[Any, ...]]) -> None:
    from meshsync.store.postgres import PostgresStore

    schema = pg_server.new_schema()
    store = PostgresStore(pg_server.dsn_for(schema))
    try:
        check_steps(store, steps)
    finally:
        store.close()
        pg_server.drop_schema(schema)


def test_the_memory_store_counts_on_read() -> None:
    check_steps(MemoryStore(), [("put", 0, 1, 0, "MS", None), ("put", 1, 1, 0, "TMS", None),
                                ("delete", 3, 2, 1), ("put", 3, 2, 1, None, "TMS")])


def test_the_check_can_fail() -> None:
    """A count the triggers missed is caught (the test is not vacuous)."""
    store = SQLiteStore(":memory:")
    check_steps(store, [("put", 0, 1, 0, "MS", None), ("put", 0, 2, 0, None, None)])
    store._db.execute("UPDATE progress SET n = n + 1 WHERE label = 'MS'")
    with pytest.raises(AssertionError):
        check(store)
    store.close()


@pytest.fixture
def old_home(tmp_path: Path) -> Iterator[Callable[[], SQLiteStore]]:
    """A SQLite home written by the schema before the counts (migration 4), opened
    by this meshsync (which applies migration 5)."""
    path = tmp_path / "old.sqlite"
    source = Device.memory("phone-0")
    for i, result in enumerate(RESULTS * 3):
        source.put("voters", f"v-{i}", {"nama": "Contoh", **({"coklit": result} if result
                                                            else {})},
                   partition=PARTS[i % 3])
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 4")
    for row in source.store.iter_records("voters"):
        db.execute("INSERT INTO records (partition, collection, key, state, deleted, "
                   "conflict) VALUES (?,?,?,?,?,?)", row[:6])
    db.close()
    stores: list[SQLiteStore] = []
    yield lambda: stores.append(SQLiteStore(path)) or stores[-1]  # type: ignore[func-returns-value]
    for store in stores:
        store.close()


def test_an_old_home_is_counted_then_labelled_once(old_home: Callable[[], SQLiteStore]) -> None:
    store = old_home()
    assert store.schema_version == len(MIGRATIONS) == 5
    counts = store.progress_counts("voters")
    assert sum(c.n for c in counts) == 15 and {c.label for c in counts} == {""}
    assert progress(store, "voters") == recompute(store, "voters")
    check(store)  # labelled now, and counted by the triggers from here on
    assert progress_mod.rebuild(store, "voters") == 15  # idempotent
    check(store)
    assert progress(store, "voters")["district"]["mimika/jila"]["done"] == 8


def doc_query(name: str) -> str:
    """The ``-- query: NAME`` block of docs/central-sql.md."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "central-sql.md"
    blocks = re.findall(r"```sql\n(.*?)```", doc.read_text(), re.S)
    return next(b for b in blocks if b.startswith(f"-- query: {name}\n"))


def test_documented_kpu_queries_agree_with_the_scan(pg_dsn: str) -> None:
    import psycopg

    from meshsync.store.postgres import PostgresStore

    store = PostgresStore(pg_dsn)
    central = Device("central", store)
    progress(store, "voters")
    results = ["MS", "TMS", "ubah", "baru", None, None]
    for i in range(36):
        fields: dict[str, Any] = {"nama": f"Contoh {i}"}
        if results[i % 6]:
            fields["coklit"] = results[i % 6]
        central.put("voters", f"v-{i}", fields, partition=PARTS[i % 3])
    central.delete("voters", "v-0", partition=PARTS[0])

    def sql(query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            return conn.execute(query.encode()).fetchall()

    kpu, scan = sql(doc_query("kpu-per-distrik")), sql(doc_query("coklit-per-distrik"))
    assert [r[:8] for r in kpu] == [r[:8] for r in scan] == [
        ("mimika/agimuga", 6, 12, 0, 0, 6, 0, 6), ("mimika/jila", 17, 23, 5, 6, 0, 6, 6)]
    assert all(r[8] is not None for r in kpu)  # result times exist (from 2024: idle)
    assert [r[0] for r in sql(doc_query("kpu-tps-idle"))] == sorted(PARTS)
    labels = sql(doc_query("counts-per-label"))
    assert (PARTS[0], "MS", 5) in labels and (PARTS[1], "belum dicoklit", 6) in labels \
        and (PARTS[0], "baru", 6) in labels and sum(r[2] for r in labels) == 35
    store.close()
