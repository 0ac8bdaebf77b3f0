"""Storage: the :class:`Store` interface and its SQLite and in-memory implementations.

The implementations are imported on first use (``from meshsync.store import
MemoryStore`` works as ever): a command that opens an SQLite home never loads the
memory store, and one that only reads never loads more than it reads with.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meshsync.store.base import (
    FeedInfo,
    ForkEvidence,
    RecordRow,
    Refusal,
    Store,
    StoredChange,
)

if TYPE_CHECKING:
    from meshsync.store.memory import MemoryStore
    from meshsync.store.sqlite import SQLiteStore

#: Implementation -> its module, imported by :func:`__getattr__` on first use.
_LAZY = {"MemoryStore": "meshsync.store.memory", "SQLiteStore": "meshsync.store.sqlite"}

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


def __getattr__(name: str) -> Any:
    """``MemoryStore`` or ``SQLiteStore``, imported now; AttributeError for another name."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
