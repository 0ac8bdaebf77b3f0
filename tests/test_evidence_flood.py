"""One enrolled device cannot grow a store without limit (issue 14, item 3).

Fork evidence and refusals are capped per author and in total
(:class:`meshsync.store.base.EvidenceLimits`): the first evidence of each fork is kept,
what is past a cap only counted. Received data counts against the storage reserve
before any of it is stored (docs/architecture.md §9), evidence included. A session
that only produced refusals says so, with counts, in its summary and its log line.

Printed: the store's bytes and rows before and after each flood.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

import pytest
from helpers import START_MS, Device, device_key

from meshsync.model.change import Change, canonical_put, sign_change
from meshsync.model.errors import AuthorizationError
from meshsync.model.identity import DeviceKey, short_id
from meshsync.net.endpoints import _log_summary
from meshsync.protocol.events import SessionDone
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig
from meshsync.store import SQLiteStore
from meshsync.store.base import EvidenceCount, EvidenceLimits, ForkEvidence, Refusal
from meshsync.store.sqlite import MIGRATIONS
from meshsync.testing.faults import SessionPair

TPS = "mimika/jila/diloa/tps-003"
MB = 1_000_000


class CertifiedOnly:
    """The certificate stage of a node that knows the certificates of ``keys`` only."""

    def __init__(self, *keys: DeviceKey) -> None:
        self.allowed = {k.public_key for k in keys}

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        """Refuse every author without a certificate (as a TrustStore does)."""
        if author not in self.allowed:
            raise AuthorizationError(f"device {short_id(author)}: no certificate")


def store_bytes(path: Path) -> int:
    """Size of the SQLite file once its WAL is checkpointed into it."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return os.path.getsize(path)


def forked(key: DeviceKey, partition: str, nonce: int, size: int) -> Change:
    """Seq 1 of ``key``'s feed in ``partition``: a different change for each ``nonce``."""
    put = canonical_put("voters", "v-1", {"foto": os.urandom(size), "n": nonce})
    return sign_change(key, partition, 1, b"", (START_MS << 16) + nonce, (put,))


def test_a_fork_flood_keeps_the_first_evidence_of_each_fork(tmp_path: Path) -> None:
    path = tmp_path / "victim.sqlite"
    victim = Device("victim", SQLiteStore(path), partition=TPS)
    thief = device_key("thief")
    victim.node.trust = CertifiedOnly(thief)
    partitions = [f"{TPS}-{i}" for i in range(8)]
    victim.receive([forked(thief, p, 0, 1000) for p in partitions])
    before = store_bytes(path)
    flood = [forked(thief, partitions[0], n, MB) for n in range(1, 31)]  # one fork, 30 bodies
    flood += [forked(thief, p, 99, MB) for p in partitions[1:]]  # 7 more forks
    report = victim.receive(flood)
    grown = store_bytes(path) - before
    forks = victim.store.forks()
    print(f"fork flood: {len(flood)} forks of 1 MB in one batch; store grew {grown} bytes, "
          f"{len(forks)} evidence rows; counted {victim.store.evidence_counts()}")
    limits = EvidenceLimits()
    assert report.refused_total == len(flood)
    assert report.refused_by_stage == {"fork": len(flood)}
    assert len(forks) == limits.forks_per_author
    assert [f.partition for f in forks] == partitions[:limits.forks_per_author]
    assert grown < (limits.forks_per_author + 1) * MB * 1.2
    [count] = victim.store.evidence_counts()
    assert (count.kind, count.author, count.count) == ("fork", thief.public_key,
                                                        len(flood) - limits.forks_per_author)
    victim.close()


def uncertified_changes(authors: int, per_author: int) -> list[Change]:
    out = []
    for a in range(authors):
        key = device_key(f"uncertified-{a}")
        prev = b""
        for seq in range(1, per_author + 1):
            put = canonical_put("voters", f"v-{seq}", {"nama": "X"})
            change = sign_change(key, TPS, seq, prev, (START_MS << 16) + seq, (put,))
            out.append(change)
            prev = change.hash
    return out


@pytest.mark.slow
def test_a_refusal_flood_is_capped_and_the_session_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "victim.sqlite"
    victim = Device("victim", SQLiteStore(path), partition=TPS)
    victim.node.trust = CertifiedOnly()
    relay = Device.memory("relay", partition=TPS)  # a phone that holds them all
    changes = uncertified_changes(40, 500)
    relay.receive(changes)
    before = store_bytes(path)
    config = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")
    pair = SessionPair(Peer(relay.node, config, now_ms=relay.clock()),
                       Peer(victim.node, config, now_ms=victim.clock()),
                       relay.clock, victim.clock)
    pair.pump()
    [end] = [e for e in pair.sides[1].events if isinstance(e, SessionDone)]
    summary = end.summary
    rows = len(victim.store.refusals(limit=1_000_000))
    grown = store_bytes(path) - before
    print(f"refusal flood: {len(changes)} uncertified changes in one session; store grew "
          f"{grown} bytes, {rows} refusal rows")
    limits = EvidenceLimits()
    assert rows == limits.refusals_total
    assert sum(c.count for c in victim.store.evidence_counts()) == len(changes) - rows
    assert len(victim.store.evidence_counts()) <= 41
    assert summary.changes_received == 0
    assert summary.apply.refused_total == len(changes)
    assert summary.to_json()["refused_total"] == len(changes)
    assert len(summary.to_json()["refused"]) == 100
    with caplog.at_level(logging.INFO, logger="meshsync.net"):
        _log_summary(("10.77.0.2", 7420), summary)
    assert re.search(r"received 0 changes, refused 20000 \(authorization \d+, "
                     r"hash chain \d+\)", caplog.text), caplog.text
    victim.close()


def test_a_version_3_store_keeps_each_refusal_once(tmp_path: Path) -> None:
    """Refusals stored twice before version 4 (one bundle imported twice) are kept once
    after the migration, and the same refusal is not added again."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    author = b"\x0a" * 32
    db.executemany("INSERT INTO refusals (author, partition, seq, stage, reason, source) "
                   "VALUES (?, ?, ?, 'authorization', 'no certificate', 'bundle')",
                   [(author, TPS, seq) for seq in (1, 2, 1, 2, 3)])
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS) == 5
        assert [r.seq for r in store.refusals()] == [1, 2, 3]
        with store.transaction():
            assert not store.add_refusal(Refusal(author, TPS, 3, "authorization", "x", "p"))
        assert len(store.refusals()) == 3
    finally:
        store.close()


def test_a_home_from_before_the_caps_is_migrated_and_keeps_its_evidence(
        tmp_path: Path) -> None:
    """A version-2 store (two bodies at one seq, 300 refusals of one author) opens as
    version 3: everything kept, and the caps apply from then on."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        db.executescript(script)
    author = b"\x0a" * 32
    for body in (b"first", b"second"):
        db.execute("INSERT INTO forks (author, partition, seq, held_hash, other_body, "
                   "other_sig, note) VALUES (?, ?, 3, ?, ?, ?, 'old')",
                   (author, TPS, b"\x01" * 32, body, b"\x02" * 64))
    db.executemany("INSERT INTO refusals (author, partition, seq, stage, reason, source) "
                   "VALUES (?, ?, ?, 'authorization', 'no certificate', 'peer')",
                   [(author, TPS, seq) for seq in range(1, 301)])
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS) == 5
        assert [f.other_body for f in store.forks()] == [b"first", b"second"]
        assert len(store.refusals(limit=1000)) == 300
        with store.transaction():
            assert not store.add_refusal(Refusal(author, TPS, 301, "authorization", "x", "p"))
            assert not store.add_fork(ForkEvidence(author, TPS, 3, b"\x01" * 32, b"first",
                                                   b"\x02" * 64, "again"))
        assert store.evidence_counts() == [EvidenceCount("refusal", author, 1)]
    finally:
        store.close()
