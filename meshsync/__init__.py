"""meshsync: offline peer-to-peer sync of signed CRDT records.

The core (this package, except :mod:`meshsync.host` and :mod:`meshsync.net`) is
sans-I/O: it takes bytes, local edits and the time, and returns bytes, events and
deadlines. Start with
:func:`open_node` for a node on a home directory::

    import meshsync
    with meshsync.open_node("/data/phone-a") as node:
        node.put("voters", "v-0001", {"nama": "Yosina", "status": "MS"})

The names of ``__all__`` are the public API; they load on first use (PEP 562), so
``import meshsync`` (and the ``meshsync`` command's start) imports none of the layers.
Everything else lives in the layer folders (docs/architecture.md §3) and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (``errors`` is the module itself).
_EXPORTS: dict[str, str] = {
    # opening a node, and the node
    "open_node": "meshsync.host.local",
    "Home": "meshsync.host.home",
    "Node": "meshsync.replica.node",
    "Record": "meshsync.replica.records",
    "Version": "meshsync.replica.records",
    "ApplyReport": "meshsync.replica.receive",
    "Validator": "meshsync.replica.policy",
    "Receipt": "meshsync.replica.receipt",
    # the signed data
    "Change": "meshsync.model.change",
    "Put": "meshsync.model.change",
    "Delete": "meshsync.model.change",
    "DeviceKey": "meshsync.model.identity",
    "HybridClock": "meshsync.model.hlc",
    # storage
    "Store": "meshsync.store.base",
    "MemoryStore": "meshsync.store.memory",
    "SQLiteStore": "meshsync.store.sqlite",
    "PostgresStore": "meshsync.store.postgres",  # needs the `central` extra
    # trust
    "TrustStore": "meshsync.trust.store",
    # errors: the module, and the classes callers catch most
    "errors": "meshsync.model.errors",
    "MeshsyncError": "meshsync.model.errors",
    "UsageError": "meshsync.model.errors",
    "NotFoundError": "meshsync.model.errors",
    "ValidationError": "meshsync.model.errors",
    "StorageError": "meshsync.model.errors",
    "StorageLowError": "meshsync.model.errors",
    "RemoteError": "meshsync.model.errors",
    "AuthorizationError": "meshsync.model.errors",
}

__all__ = [
    "ApplyReport",
    "AuthorizationError",
    "Change",
    "Delete",
    "DeviceKey",
    "Home",
    "HybridClock",
    "MemoryStore",
    "MeshsyncError",
    "Node",
    "NotFoundError",
    "PostgresStore",
    "Put",
    "Receipt",
    "Record",
    "RemoteError",
    "SQLiteStore",
    "StorageError",
    "StorageLowError",
    "Store",
    "TrustStore",
    "UsageError",
    "ValidationError",
    "Validator",
    "Version",
    "__version__",
    "errors",
    "open_node",
]


def __getattr__(name: str) -> Any:
    """Load the public name ``name`` from its module on first use (PEP 562).

    Raises :class:`AttributeError` for a name that is not in ``__all__``.
    """
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "errors" else getattr(module, name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    """The module's attributes with the public names not loaded yet."""
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads them
    from meshsync.host.home import Home
    from meshsync.host.local import open_node
    from meshsync.model import errors
    from meshsync.model.change import Change, Delete, Put
    from meshsync.model.errors import (
        AuthorizationError,
        MeshsyncError,
        NotFoundError,
        RemoteError,
        StorageError,
        StorageLowError,
        UsageError,
        ValidationError,
    )
    from meshsync.model.hlc import HybridClock
    from meshsync.model.identity import DeviceKey
    from meshsync.replica.node import Node
    from meshsync.replica.policy import Validator
    from meshsync.replica.receipt import Receipt
    from meshsync.replica.receive import ApplyReport
    from meshsync.replica.records import Record, Version
    from meshsync.store.base import Store
    from meshsync.store.memory import MemoryStore
    from meshsync.store.postgres import PostgresStore
    from meshsync.store.sqlite import SQLiteStore
    from meshsync.trust.store import TrustStore
