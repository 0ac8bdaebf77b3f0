"""Small shared test helpers: a device with a hand-moved clock, and a one-way exchange.

Keys are derived from the device name, so author order (the tie-break of concurrent
edits) and every signature are the same on every run.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshsync.model.change import Change
from meshsync.model.identity import DeviceKey
from meshsync.replica.node import Node
from meshsync.replica.receive import ApplyReport
from meshsync.store import MemoryStore, SQLiteStore, Store

#: 2024-06-01T00:00:00Z, in ms: the default wall clock of a test device.
START_MS = 1_717_200_000_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class FakeClock:
    """A wall clock tests set by hand: ``clock()`` reads ``clock.now_ms``."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move the clock by ``ms`` (negative moves it back, as officers sometimes do)."""
        self.now_ms += ms


def device_key(name: str) -> DeviceKey:
    """A deterministic Ed25519 key for ``name``."""
    seed = hashlib.sha256(f"meshsync test device {name}".encode()).digest()
    return DeviceKey(Ed25519PrivateKey.from_private_bytes(seed))


class Device:
    """A :class:`Node` with a :class:`FakeClock`; other attributes fall through to the node."""

    def __init__(self, name: str, store: Store, *, now_ms: int = START_MS,
                 partition: str = "mimika/jila/tps-001") -> None:
        self.name = name
        self.store = store
        self.clock = FakeClock(now_ms)
        self.key = device_key(name)
        self.node = Node(store, self.key, self.clock, default_partition=partition)

    @classmethod
    def memory(cls, name: str, **kwargs: Any) -> Device:
        """A device on a fresh :class:`MemoryStore`."""
        return cls(name, MemoryStore(), **kwargs)

    @classmethod
    def sqlite(cls, name: str, path: Path | str = ":memory:", **kwargs: Any) -> Device:
        """A device on a :class:`SQLiteStore` at ``path`` (default: in memory)."""
        return cls(name, SQLiteStore(path), **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.node, attr)

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def node_of(device: Device | Node) -> Node:
    """The node of a device (or the node itself)."""
    return device.node if isinstance(device, Device) else device


def exchange(a: Device | Node, b: Device | Node) -> ApplyReport:
    """One-way sync: everything ``a`` holds beyond ``b``'s version vector, into ``b``."""
    src, dst = node_of(a), node_of(b)
    return dst.receive(list(src.changes_since(dst.version_vector())))


def sync(a: Device | Node, b: Device | Node) -> None:
    """Two-way sync: ``a`` to ``b``, then ``b`` to ``a``."""
    exchange(a, b)
    exchange(b, a)


def all_changes(device: Device | Node) -> list[Change]:
    """Every change ``device`` holds, feed by feed in seq order."""
    return list(node_of(device).changes_since({}))


def deliver(device: Device | Node, batches: Iterable[Iterable[Change]]) -> ApplyReport:
    """Receive each batch in its own transaction; the merged report."""
    total = ApplyReport()
    for batch in batches:
        total.merge(node_of(device).receive(list(batch)))
    return total


def records_stored(home: Path) -> int:
    """Records committed in the SQLite store of the home at ``home`` (read by a second,
    read-only connection while another process writes; 0 before the store exists)."""
    if not (home / "store.sqlite").exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True,
                                     timeout=1)) as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.Error:
        return 0
