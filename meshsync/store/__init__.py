"""Storage: the :class:`Store` interface and its SQLite and in-memory implementations."""

from meshsync.store.base import (
    FeedInfo,
    ForkEvidence,
    RecordRow,
    Refusal,
    Store,
    StoredChange,
)
from meshsync.store.memory import MemoryStore
from meshsync.store.sqlite import SQLiteStore

__all__ = [
    "FeedInfo",
    "ForkEvidence",
    "MemoryStore",
    "RecordRow",
    "Refusal",
    "SQLiteStore",
    "Store",
    "StoredChange",
]
