"""The storage contract (:class:`meshsync.store.Store`) as a reusable test suite.

Every store runs it (like automerge-repo's storage-adapter-tests and
trio's ``check_streams``). To check a store, subclass :class:`StoreConformance` in a
``test_*.py`` file and override the ``make_store`` fixture::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def make_store(self, tmp_path):
            stores = []
            def make():
                stores.append(MyStore(...))  # a fresh, empty store each call
                return stores[-1]
            yield make
            for store in stores:
                store.close()

The suite only uses the :class:`Store` interface, so it knows nothing of files,
connections or schemas. Writes outside a transaction and appends that do not follow
the feed head must raise :class:`meshsync.model.errors.UsageError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from meshsync.model.change import FeedId
from meshsync.model.errors import UsageError
from meshsync.store.base import (
    EvidenceCount,
    EvidenceLimits,
    ForkEvidence,
    QuarantinedChange,
    RecordRow,
    Refusal,
    Store,
    StoredChange,
    record_pos,
)

AUTHOR_A = b"\x0a" * 32
AUTHOR_B = b"\x0b" * 32
AUTHOR_C = b"\x0c" * 32
FEED_A: FeedId = (AUTHOR_A, "mimika/jila/tps-001")
FEED_A2: FeedId = (AUTHOR_A, "mimika/agimuga/tps-002")
FEED_B: FeedId = (AUTHOR_B, "mimika/jila/tps-001")

PARTITIONS = [  # around the prefix "mimika/jila", in no particular order
    "mimika/jilab", "mimika/jila/x/y", "mimika/jila", "mimika/jila-b", "mimika/jila.b",
    "mimika/jila0", "mimika/jila_c", "mimika/ji", "mimika", "mimika/jila/x", "timika/jila",
]
UNDER_JILA = ["mimika/jila", "mimika/jila/x", "mimika/jila/x/y"]


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


class Interrupted(BaseException):
    """Like KeyboardInterrupt: not an Exception, and must still roll back."""


def change(seq: int, tag: bytes = b"") -> StoredChange:
    """A stored change whose bytes are unlike any other (NUL and high bytes included)."""
    body = b"\x97\x00\xff" + tag + seq.to_bytes(4, "big")
    return StoredChange(seq, bytes([seq % 256]) * 31 + tag[:1].ljust(1, b"h"), body,
                        b"\x00\xff" * 32)


def row(partition: str, key: str = "v-1", collection: str = "voters", *,
        state: bytes = b"\x94\x00", deleted: bool = False, conflict: bool = False) -> RecordRow:
    return RecordRow(partition, collection, key, state, deleted, conflict)


def fork(seq: int, other: bytes = b"other", author: bytes = AUTHOR_A,
         partition: str = FEED_A[1]) -> ForkEvidence:
    return ForkEvidence(author, partition, seq, b"\x01" * 32, other, b"\x02" * 64, "note")


def quarantined(seq: int, tag: bytes = b"", author: bytes = AUTHOR_B,
                partition: str = FEED_B[1]) -> QuarantinedChange:
    c = change(seq, tag)
    return QuarantinedChange(author, partition, seq, c.hash, c.body, c.sig,
                             f"revoked after seq 0 (change seq {seq}); quarantined \u2019")


def refusal(seq: int) -> Refusal:
    return Refusal(AUTHOR_B, FEED_B[1], seq, "hash chain", f"gap at {seq}", "peer")


def snapshot(store: Store) -> tuple[object, ...]:
    """Everything readable through the interface."""
    feeds = store.feeds()
    return (
        feeds,
        {f.feed: list(store.iter_changes(f.feed)) for f in feeds},
        store.count_changes(),
        list(store.iter_records()),
        store.forks(),
        store.refusals(),
        store.credentials(),
        store.quarantined(),
        store.evidence_counts(),
        store.get_meta("hlc"),
        store.get_meta("other"),
    )


def populate(store: Store) -> None:
    with store.transaction():
        for seq in (1, 2):
            store.append_change(FEED_A, change(seq), 100 + seq)
        store.save_record(row("mimika/jila"))
        store.add_fork(fork(1))
        store.add_refusal(refusal(1))
        store.set_meta("hlc", b"\x00\x01")
        store.add_credential(b"\x11" * 32, b"cert-1")
        store.add_quarantined(quarantined(1))


class StoreConformance:
    """The store contract. Subclasses provide ``make_store`` (see module docs)."""

    @pytest.fixture
    def make_store(self) -> Iterator[Callable[[], Store]]:
        raise NotImplementedError("override the make_store fixture")

    @pytest.fixture
    def store(self, make_store: Callable[[], Store]) -> Store:
        return make_store()

    # -- feeds and changes ------------------------------------------------------------

    def test_empty_store(self, store: Store) -> None:
        assert store.feeds() == []
        assert store.feed_head(FEED_A) is None
        assert store.change_at(FEED_A, 1) is None
        assert list(store.iter_changes(FEED_A)) == []
        assert store.count_changes() == 0
        assert list(store.iter_records()) == []
        assert store.find_record("voters", "v-1") == []
        assert store.load_record("mimika", "voters", "v-1") is None
        assert store.forks() == []
        assert store.refusals() == []
        assert store.credentials() == []
        assert store.quarantined() == []
        assert store.get_meta("hlc") is None

    def test_append_and_read_back_byte_exact(self, store: Store) -> None:
        with store.transaction():
            for seq in range(1, 4):
                store.append_change(FEED_A, change(seq), 1000 + seq)
        head = store.feed_head(FEED_A)
        assert head is not None
        assert (head.author, head.partition, head.head_seq, head.head_hash) == (
            AUTHOR_A, FEED_A[1], 3, change(3).hash)
        assert head.feed == FEED_A
        assert store.change_at(FEED_A, 2) == change(2)
        assert store.change_at(FEED_A, 0) is None
        assert store.change_at(FEED_A, 4) is None
        assert store.change_at(FEED_B, 1) is None
        assert store.count_changes() == 3

    def test_invalid_reason_is_kept(self, store: Store) -> None:
        reason = "voters/v-1 nama: wajib diisi \u2019"
        with store.transaction():
            store.append_change(FEED_A, StoredChange(1, b"h" * 32, b"b", b"s" * 64, reason), 1)
            store.append_change(FEED_A, StoredChange(2, b"i" * 32, b"c", b"s" * 64), 2)
        assert store.change_at(FEED_A, 1).invalid == reason  # type: ignore[union-attr]
        assert store.change_at(FEED_A, 2).invalid is None  # type: ignore[union-attr]

    def test_iter_changes_in_seq_order_after_seq(self, store: Store) -> None:
        with store.transaction():
            for seq in range(1, 301):  # past any internal page size
                store.append_change(FEED_A, change(seq), seq)
                if seq <= 2:
                    store.append_change(FEED_B, change(seq, b"B"), seq)
        assert [c.seq for c in store.iter_changes(FEED_A)] == list(range(1, 301))
        assert [c.seq for c in store.iter_changes(FEED_A, 257)] == list(range(258, 301))
        assert list(store.iter_changes(FEED_A, 300)) == []
        assert list(store.iter_changes(FEED_A, 0))[4] == change(5)
        assert [c.body for c in store.iter_changes(FEED_B)] == [change(1, b"B").body,
                                                                 change(2, b"B").body]
        assert store.count_changes() == 302

    def test_feeds_sorted_by_author_then_partition(self, store: Store) -> None:
        with store.transaction():
            for feed in (FEED_B, FEED_A, FEED_A2):
                store.append_change(feed, change(1), 1)
            store.append_change(FEED_A2, change(2), 2)
        assert [(f.feed, f.head_seq) for f in store.feeds()] == [
            (FEED_A2, 2), (FEED_A, 1), (FEED_B, 1)]

    @pytest.mark.parametrize("seqs", [(2,), (0,), (1, 1), (1, 3), (1, 2, 2)])
    def test_append_at_wrong_seq_is_refused(self, store: Store, seqs: tuple[int, ...]) -> None:
        with store.transaction():
            for seq in seqs[:-1]:
                store.append_change(FEED_A, change(seq), seq)
            with pytest.raises(UsageError):
                store.append_change(FEED_A, change(seqs[-1], b"x"), 99)
        held = list(store.iter_changes(FEED_A))
        assert [c.seq for c in held] == list(seqs[:-1])
        assert all(c.body == change(c.seq).body for c in held)
        assert store.count_changes() == len(seqs) - 1
        assert [f.feed for f in store.feeds()] == ([FEED_A] if len(seqs) > 1 else [])

    def test_truncate_feed_moves_the_head_back(self, store: Store) -> None:
        with store.transaction():
            for seq in range(1, 301):  # past any internal page size
                store.append_change(FEED_A, change(seq), seq)
            store.append_change(FEED_B, change(1, b"B"), 1)
        with store.transaction():
            assert store.truncate_feed(FEED_A, 3) == [change(s) for s in range(4, 301)]
            assert store.feed_head(FEED_A).head_seq == 3  # type: ignore[union-attr]
        head = store.feed_head(FEED_A)
        assert head is not None and (head.head_seq, head.head_hash) == (3, change(3).hash)
        assert [c.seq for c in store.iter_changes(FEED_A)] == [1, 2, 3]
        assert store.change_at(FEED_A, 4) is None and store.count_changes() == 4
        assert [(f.feed, f.head_seq) for f in store.feeds()] == [(FEED_A, 3), (FEED_B, 1)]
        with store.transaction():
            for after in (3, 7):
                assert store.truncate_feed(FEED_A, after) == []  # nothing past it
            assert store.truncate_feed(FEED_A2, 0) == []  # a feed not held
            store.append_change(FEED_A, change(4, b"new"), 4)  # the feed goes on from 3
            store.append_change(FEED_A, change(5), 5)
            assert store.truncate_feed(FEED_A, 4) == [change(5)]  # appended in this tx
            with pytest.raises(UsageError):
                store.append_change(FEED_A, change(6), 6)
        assert list(store.iter_changes(FEED_A, 2)) == [change(3), change(4, b"new")]

    def test_truncate_feed_to_zero_forgets_the_feed(self, store: Store) -> None:
        with store.transaction():
            for seq in (1, 2):
                store.append_change(FEED_A, change(seq), seq)
            store.append_change(FEED_B, change(1, b"B"), 1)
        with store.transaction():
            assert store.truncate_feed(FEED_A, 0) == [change(1), change(2)]
            assert store.feed_head(FEED_A) is None
        assert store.feed_head(FEED_A) is None and [f.feed for f in store.feeds()] == [FEED_B]
        assert list(store.iter_changes(FEED_A)) == [] and store.count_changes() == 1
        with store.transaction():  # it may start again at seq 1
            store.append_change(FEED_A, change(1, b"again"), 1)
        assert store.change_at(FEED_A, 1) == change(1, b"again")

    def test_reads_inside_a_transaction_see_its_writes(self, store: Store) -> None:
        with store.transaction():
            store.append_change(FEED_A, change(1), 1)
            assert store.feed_head(FEED_A).head_seq == 1  # type: ignore[union-attr]
            assert store.change_at(FEED_A, 1) == change(1)
            store.save_record(row("mimika/jila"))
            assert store.load_record("mimika/jila", "voters", "v-1") == row("mimika/jila")
            store.set_meta("hlc", b"\x05")
            assert store.get_meta("hlc") == b"\x05"

    # -- transactions ------------------------------------------------------------------

    @pytest.mark.parametrize("error", [Boom, Interrupted])
    def test_rollback_leaves_nothing(self, store: Store, error: type[BaseException]) -> None:
        populate(store)
        before = snapshot(store)
        with pytest.raises(error), store.transaction():
            store.append_change(FEED_A, change(3), 103)
            store.append_change(FEED_B, change(1, b"B"), 1)  # a feed that did not exist
            store.save_record(row("mimika/jila", state=b"changed"))
            store.save_record(row("mimika/jila", key="v-new"))
            store.add_fork(fork(2))
            store.add_refusal(refusal(2))
            store.set_meta("hlc", b"\x00\x02")
            store.set_meta("other", b"x")
            store.add_credential(b"\x22" * 32, b"cert-2")
            assert store.truncate_feed(FEED_A, 1) == [change(2), change(3)]
            store.delete_record("mimika/jila", "voters", "v-1")
            store.add_quarantined(quarantined(2))
            raise error("power cut")
        assert snapshot(store) == before

    def test_store_is_usable_after_a_rollback(self, store: Store) -> None:
        with pytest.raises(Boom), store.transaction():
            store.append_change(FEED_B, change(1, b"B"), 1)
            raise Boom
        assert store.feed_head(FEED_B) is None
        with store.transaction():  # the rolled-back feed starts again at seq 1
            store.append_change(FEED_B, change(1, b"C"), 1)
            store.append_change(FEED_B, change(2, b"C"), 2)
        assert store.feed_head(FEED_B).head_hash == change(2, b"C").hash  # type: ignore[union-attr]
        assert store.change_at(FEED_B, 1).body == change(1, b"C").body  # type: ignore[union-attr]

    def test_a_refused_append_does_not_spoil_the_transaction(self, store: Store) -> None:
        with store.transaction():
            store.append_change(FEED_A, change(1), 1)
            with pytest.raises(UsageError):
                store.append_change(FEED_A, change(5), 5)
            store.append_change(FEED_A, change(2), 2)
        assert [c.seq for c in store.iter_changes(FEED_A)] == [1, 2]

    def test_writes_outside_a_transaction_are_refused(self, store: Store) -> None:
        populate(store)
        before = snapshot(store)
        writes: list[Callable[[], object]] = [
            lambda: store.append_change(FEED_A, change(3), 3),
            lambda: store.append_change(FEED_B, change(1), 1),
            lambda: store.save_record(row("mimika/jila", key="v-2")),
            lambda: store.save_records([row("mimika/jila", key="v-3")]),
            lambda: store.add_fork(fork(9)),
            lambda: store.add_refusal(refusal(9)),
            lambda: store.set_meta("hlc", b"\x09"),
            lambda: store.add_credential(b"\x33" * 32, b"cert-3"),
            lambda: store.truncate_feed(FEED_A, 1),
            lambda: store.delete_record("mimika/jila", "voters", "v-1"),
            lambda: store.add_quarantined(quarantined(9)),
        ]
        for write in writes:
            with pytest.raises(UsageError):
                write()
        assert snapshot(store) == before

    def test_transaction_is_reusable(self, store: Store) -> None:
        for seq in range(1, 4):
            with store.transaction():
                store.append_change(FEED_A, change(seq), seq)
        assert store.feed_head(FEED_A).head_seq == 3  # type: ignore[union-attr]

    # -- records ------------------------------------------------------------------------

    def test_save_load_and_replace_record(self, store: Store) -> None:
        first = row("mimika/jila", state=b"\x00one")
        second = row("mimika/jila", state=b"\xfftwo", deleted=True, conflict=True)
        with store.transaction():
            store.save_record(first)
        assert store.load_record("mimika/jila", "voters", "v-1") == first
        with store.transaction():
            store.save_record(second)
        assert store.load_record("mimika/jila", "voters", "v-1") == second
        assert list(store.iter_records()) == [second]
        assert store.load_record("mimika/jila", "voters", "v-2") is None
        assert store.load_record("mimika/jila", "kk", "v-1") is None
        assert store.load_record("mimika", "voters", "v-1") is None

    def test_delete_record(self, store: Store) -> None:
        with store.transaction():
            store.save_records([row("mimika/jila", key="v-1"), row("mimika/jila", key="v-2"),
                                row("mimika/jila/x", key="v-1")])
        with store.transaction():
            store.delete_record("mimika/jila", "voters", "v-1")
            store.delete_record("mimika/jila", "voters", "v-9")  # absent: no-op
            assert store.load_record("mimika/jila", "voters", "v-1") is None
        assert [(r.partition, r.key) for r in store.iter_records()] == [
            ("mimika/jila/x", "v-1"), ("mimika/jila", "v-2")]
        with store.transaction():  # read, delete and save again; save, then delete
            assert store.load_record("mimika/jila", "voters", "v-2") is not None
            store.delete_record("mimika/jila", "voters", "v-2")
            store.save_record(row("mimika/jila", key="v-2", state=b"back"))
            store.save_record(row("mimika/jila", key="v-3"))
            store.delete_record("mimika/jila", "voters", "v-3")
        assert [(r.key, r.state) for r in store.iter_records(partition_prefix="mimika/jila",
                                                             collection="voters")] == [
            ("v-1", row("").state), ("v-2", b"back")]

    def test_names_are_stored_exactly(self, store: Store) -> None:
        keys = ["Ma'ruf", "Ma\u2019ruf", "Ma\u02bcruf", "Mari\u0301a", "Mar\u00eda", "a\x00b"]
        with store.transaction():
            for key in keys:
                store.save_record(row("mimika/jila", key=key, state=key.encode()))
        for key in keys:
            found = store.load_record("mimika/jila", "voters", key)
            assert found is not None
            assert found.key == key
            assert found.state == key.encode()
        assert len(list(store.iter_records())) == len(keys)

    def test_load_records_in_one_call(self, store: Store) -> None:
        rows = [row("mimika/jila", key=f"v-{i:04d}", state=b"s%d" % i) for i in range(1200)]
        rows += [row("mimika/hoya", key="v-0001", state=b"hoya"),
                 row("mimika/jila", key="v-0001", collection="kk", state=b"kk")]
        with store.transaction():
            store.save_records(rows)
        wanted = [("mimika/jila", "voters", f"v-{i:04d}") for i in range(1, 1300, 2)]
        wanted += [("mimika/hoya", "voters", "v-0001"), ("mimika/jila", "kk", "v-0001"),
                   ("mimika/agimuga", "voters", "v-0001"), ("mimika/jila", "voters", "v-0003"),
                   ("mimika/agimuga", "voters", "v-0002")]  # only mimika/jila has v-0002
        got = store.load_records(wanted)
        saved = {(r.partition, r.collection, r.key) for r in rows}
        present = {k for k in wanted if k in saved}  # absent keys left out, repeats once
        assert len(present) == 600 + 2
        assert sorted(got) == sorted(present)
        for (partition, collection, key), found in got.items():
            assert found == store.load_record(partition, collection, key)
        assert got[("mimika/hoya", "voters", "v-0001")].state == b"hoya"
        assert got[("mimika/jila", "kk", "v-0001")].state == b"kk"
        assert got[("mimika/jila", "voters", "v-0001")].state == b"s1"
        assert store.load_records([]) == {}

    def test_save_records_replaces_and_rolls_back(self, store: Store) -> None:
        with store.transaction():
            store.save_records([row("mimika/jila", key="v-1"), row("mimika/jila", key="v-2")])
            store.save_records([])
        replaced = row("mimika/jila", key="v-1", state=b"new", deleted=True, conflict=True)
        with store.transaction():
            store.save_records([replaced])
        assert list(store.iter_records()) == [replaced, row("mimika/jila", key="v-2")]
        with pytest.raises(Boom), store.transaction():
            store.save_records([row("mimika/jila", key="v-1"), row("mimika/jila", key="v-3")])
            raise Boom
        assert list(store.iter_records()) == [replaced, row("mimika/jila", key="v-2")]
        with pytest.raises(UsageError):
            store.save_records([row("mimika/jila", key="v-4")])
        assert store.load_record("mimika/jila", "voters", "v-4") is None

    def test_iter_records_order(self, store: Store) -> None:
        rows = [row(p, key=k, collection=c) for c in ("voters", "kk") for k in ("v-2", "v-1")
                for p in ("mimika/jila", "mimika/hoya")]
        with store.transaction():
            for r in rows:
                store.save_record(r)
        got = [(r.collection, r.key, r.partition) for r in store.iter_records()]
        assert got == sorted(got)
        assert len(got) == len(rows)

    def test_iter_records_by_collection(self, store: Store) -> None:
        with store.transaction():
            store.save_record(row("mimika/jila", collection="voters"))
            store.save_record(row("mimika/jila", collection="kk"))
            store.save_record(row("mimika/jila", collection="voters2"))
        assert [r.collection for r in store.iter_records("voters")] == ["voters"]
        assert [r.collection for r in store.iter_records("kk")] == ["kk"]
        assert list(store.iter_records("absent")) == []

    def test_partition_prefix_matches_whole_segments(self, store: Store) -> None:
        with store.transaction():
            for p in PARTITIONS:
                store.save_record(row(p))
        under = [r.partition for r in store.iter_records(partition_prefix="mimika/jila")]
        assert sorted(under) == sorted(UNDER_JILA)
        assert [r.partition for r in store.iter_records("voters", "mimika/jila/x")] == [
            "mimika/jila/x", "mimika/jila/x/y"]
        assert sorted(r.partition for r in store.iter_records(partition_prefix="")) == sorted(
            PARTITIONS)
        assert sorted(r.partition for r in store.iter_records(partition_prefix="mimika")) == (
            sorted(p for p in PARTITIONS if p != "timika/jila"))
        assert list(store.iter_records(partition_prefix="mimika/jil")) == []
        assert list(store.iter_records(partition_prefix="mimika/jila/x/y/z")) == []

    def test_conflicts_only(self, store: Store) -> None:
        with store.transaction():
            store.save_record(row("mimika/jila", key="v-1", conflict=True))
            store.save_record(row("mimika/jila", key="v-2"))
            store.save_record(row("mimika/jilab", key="v-3", conflict=True))
            store.save_record(row("mimika/jila/x", key="v-4", collection="kk", conflict=True))
        assert [r.key for r in store.iter_records(conflicts_only=True)] == ["v-4", "v-1", "v-3"]
        assert [r.key for r in store.iter_records("voters", "mimika/jila",
                                                  conflicts_only=True)] == ["v-1"]
        with store.transaction():  # resolving clears the flag
            store.save_record(row("mimika/jila", key="v-1"))
        assert [r.key for r in store.iter_records("voters", conflicts_only=True)] == ["v-3"]

    def test_records_page_walks_in_order(self, store: Store) -> None:
        rows = [row(p, key=k, collection=c, deleted=k == "v-3", conflict=k == "v-2")
                for c in ("voters", "kk") for k in ("v-3", "v-2", "v-1", "v-\x00")
                for p in ("mimika/jila/x", "mimika/hoya", "mimika/jila")]
        with store.transaction():
            store.save_records(rows)
        for args, kw in (((None,), {}), (("voters", "mimika/jila"), {}),
                         (("kk",), {"live_only": True}), ((None,), {"conflicts_only": True})):
            pages, after = [], None
            while True:
                page = store.records_page(*args, after=after, limit=2, **kw)  # type: ignore[arg-type]
                assert len(page) <= 2
                pages += page
                if len(page) < 2:
                    break
                after = record_pos(page[-1])
            want = [r for r in store.iter_records(*args, conflicts_only=kw.get(
                "conflicts_only", False)) if not (kw.get("live_only") and r.deleted)]
            assert pages == want and want
        assert store.records_page("voters", after=("voters", "v-9", ""), limit=5) == []
        assert store.records_page("voters", after=("zz", "", ""), limit=5) == []
        assert store.records_page("voters", after=("kk", "v-9", ""), limit=1) == \
            store.records_page("voters", limit=1)
        first = store.records_page("voters", limit=1)
        assert first == [row("mimika/hoya", key="v-\x00", conflict=False)]
        with store.transaction():  # added ahead of the cursor: seen; behind it: not
            store.save_records([row("mimika/zz", key="v-\x00"), row("mimika/a", key="v-\x00")])
        rest = store.records_page("voters", after=record_pos(first[0]), limit=100)
        assert [(r.key, r.partition) for r in rest[:3]] == [
            ("v-\x00", "mimika/jila"), ("v-\x00", "mimika/jila/x"), ("v-\x00", "mimika/zz")]

    def test_find_record_in_every_partition(self, store: Store) -> None:
        with store.transaction():
            for p in ("mimika/jila/x", "mimika/agimuga", "mimika/jila"):
                store.save_record(row(p))
            store.save_record(row("mimika/hoya", key="v-2"))
            store.save_record(row("mimika/hoya", collection="kk"))
        assert [r.partition for r in store.find_record("voters", "v-1")] == [
            "mimika/agimuga", "mimika/jila", "mimika/jila/x"]
        assert [r.partition for r in store.find_record("voters", "v-2")] == ["mimika/hoya"]
        assert store.find_record("voters", "v-3") == []

    # -- evidence, refusals, metadata, credentials ---------------------------------------

    def test_forks_dedup_and_order(self, store: Store) -> None:
        with store.transaction():
            store.add_fork(fork(3))
            store.add_fork(fork(1, author=AUTHOR_B))
            store.add_fork(fork(1))
            store.add_fork(fork(3))  # the same evidence again
            store.add_fork(fork(3, other=b"another"))  # a third change at seq 3: counted
            store.add_fork(fork(2, partition="mimika/agimuga/tps-002"))
        with store.transaction():
            store.add_fork(fork(1))  # and again in a later transaction
        got = [(f.author, f.partition, f.seq) for f in store.forks()]
        assert got == [(AUTHOR_A, "mimika/agimuga/tps-002", 2), (AUTHOR_A, FEED_A[1], 1),
                       (AUTHOR_A, FEED_A[1], 3), (AUTHOR_B, FEED_A[1], 1)]
        assert {f.other_body for f in store.forks() if f.seq == 3} == {b"other"}
        assert fork(1) in store.forks()
        assert store.evidence_counts() == [EvidenceCount("fork", AUTHOR_A, 1)]

    # -- caps on evidence (issue 14): first evidence kept, the rest counted ------------

    SMALL = EvidenceLimits(forks_per_author=2, forks_total=3, refusals_per_author=3,
                           refusals_total=5)

    def test_fork_evidence_is_capped_per_author_and_in_total(self, store: Store) -> None:
        store.evidence_limits = self.SMALL
        with store.transaction():
            kept = [store.add_fork(fork(seq, other=b"x" * 1000)) for seq in range(1, 6)]
            kept += [store.add_fork(fork(seq, author=AUTHOR_B)) for seq in (1, 2)]
            kept.append(store.add_fork(fork(1, author=AUTHOR_C)))
            kept.append(store.add_fork(fork(1, other=b"x" * 1000)))  # held: ignored
        assert kept == [True, True, False, False, False, True, False, False, False]
        assert [(f.author, f.seq) for f in store.forks()] == [
            (AUTHOR_A, 1), (AUTHOR_A, 2), (AUTHOR_B, 1)]
        assert store.evidence_counts() == [EvidenceCount("fork", b"", 1),
                                           EvidenceCount("fork", AUTHOR_A, 3),
                                           EvidenceCount("fork", AUTHOR_B, 1)]

    def test_refusals_are_capped_per_author_and_in_total(self, store: Store) -> None:
        store.evidence_limits = self.SMALL

        def refused(author: bytes, seq: int) -> Refusal:
            return Refusal(author, FEED_A[1], seq, "authorization", "no certificate", "peer")

        with store.transaction():
            kept = [store.add_refusal(refused(AUTHOR_A, seq)) for seq in range(1, 6)]
        with store.transaction():
            kept += [store.add_refusal(refused(AUTHOR_B, seq)) for seq in range(1, 4)]
            kept.append(store.add_refusal(refused(AUTHOR_C, 1)))
        assert kept == [True] * 3 + [False] * 2 + [True] * 2 + [False] * 2
        assert [(r.author, r.seq) for r in store.refusals()] == [
            (AUTHOR_A, 1), (AUTHOR_A, 2), (AUTHOR_A, 3), (AUTHOR_B, 1), (AUTHOR_B, 2)]
        assert store.evidence_counts() == [EvidenceCount("refusal", b"", 1),
                                           EvidenceCount("refusal", AUTHOR_A, 2),
                                           EvidenceCount("refusal", AUTHOR_B, 1)]

    def test_counts_past_the_caps_roll_back_and_need_a_transaction(self, store: Store) -> None:
        store.evidence_limits = self.SMALL
        with store.transaction():
            for seq in range(1, 4):
                store.add_refusal(refusal(seq))
        with pytest.raises(Boom), store.transaction():
            store.add_refusal(refusal(4))
            store.add_fork(fork(1))
            store.add_fork(fork(1, other=b"another"))
            raise Boom
        assert store.evidence_counts() == []
        assert store.forks() == []
        with pytest.raises(UsageError):
            store.add_refusal(refusal(5))
        assert store.evidence_counts() == []

    def test_refusals_oldest_first_and_limited_to_most_recent(self, store: Store) -> None:
        with store.transaction():
            for seq in (5, 3, 9):
                store.add_refusal(refusal(seq))
        with store.transaction():
            store.add_refusal(refusal(1))
            store.add_refusal(dataclasses.replace(refusal(1), hash=b"h" * 32))
        assert [r.seq for r in store.refusals()] == [5, 3, 9, 1, 1]
        assert [r.seq for r in store.refusals(limit=2)] == [1, 1]
        assert [r.seq for r in store.refusals(limit=4)] == [3, 9, 1, 1]
        assert [r.seq for r in store.refusals(limit=100)] == [5, 3, 9, 1, 1]
        assert store.refusals(limit=0) == []
        assert store.refusals()[0] == refusal(5)
        assert store.refusals()[-1].hash == b"h" * 32

    def test_the_same_refusal_is_kept_once(self, store: Store) -> None:
        """The same (author, partition, seq, hash, stage) twice (one refused bundle
        imported twice) is one row; another hash or stage is another."""
        first = dataclasses.replace(refusal(1), hash=b"h" * 32)
        with store.transaction():
            assert store.add_refusal(first)
        with store.transaction():
            assert not store.add_refusal(dataclasses.replace(first, source="again"))
            assert store.add_refusal(dataclasses.replace(first, hash=b"i" * 32))
            assert store.add_refusal(dataclasses.replace(first, stage="validation"))
            assert not store.add_refusal(first)
        assert [(r.hash[:1], r.stage) for r in store.refusals()] == [
            (b"h", "hash chain"), (b"i", "hash chain"), (b"h", "validation")]
        assert store.evidence_counts() == []

    def test_quarantined_dedup_and_order(self, store: Store) -> None:
        with store.transaction():
            store.add_quarantined(quarantined(3))
            store.add_quarantined(quarantined(1, author=AUTHOR_A, partition=FEED_A[1]))
            store.add_quarantined(quarantined(2))
            store.add_quarantined(quarantined(3))  # the same change again
        with store.transaction():
            store.add_quarantined(quarantined(2))  # and in a later transaction
            store.add_quarantined(quarantined(2, b"x"))  # another change at seq 2 (a fork)
        got = store.quarantined()
        assert [(q.author, q.seq) for q in got] == [
            (AUTHOR_A, 1), (AUTHOR_B, 2), (AUTHOR_B, 2), (AUTHOR_B, 3)]
        assert got[-1] == quarantined(3)  # byte-exact, reason included
        assert {q.body for q in got if q.seq == 2} == {change(2).body, change(2, b"x").body}

    def test_meta(self, store: Store) -> None:
        with store.transaction():
            store.set_meta("hlc", b"\x00\x00\x01")
            store.set_meta("peer/x", b"")
        with store.transaction():
            store.set_meta("hlc", b"\xff")
        assert store.get_meta("hlc") == b"\xff"
        assert isinstance(store.get_meta("hlc"), bytes)
        assert store.get_meta("peer/x") == b""
        assert store.get_meta("absent") is None

    def test_credentials_dedup_in_insertion_order(self, store: Store) -> None:
        with store.transaction():
            assert store.add_credential(b"\x02" * 32, b"second-digest-first") is True
            assert store.add_credential(b"\x01" * 32, b"\x00cert\xff") is True
            assert store.add_credential(b"\x02" * 32, b"second-digest-first") is False
        with store.transaction():
            assert store.add_credential(b"\x01" * 32, b"\x00cert\xff") is False
            assert store.add_credential(b"\x03" * 32, b"third") is True
        assert store.credentials() == [b"second-digest-first", b"\x00cert\xff", b"third"]
        assert all(isinstance(c, bytes) for c in store.credentials())
