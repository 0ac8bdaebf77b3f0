"""Open a node on a home directory, with the system clock: the library's front door.

This is the one place outside the I/O layer that reads the wall clock (the node
itself is given a clock function, never reads one).

Example::

    from meshsync.io_local import open_node
    with open_node("/data/phone-a") as node:
        node.put("voters", "v-0001", {"nama": "Yosina", "status": "ms"})
        print(node.get("voters", "v-0001").fields)
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshsync.errors import UsageError
from meshsync.home import Home
from meshsync.node import Node
from meshsync.policy import Authorizer, OpenTrust
from meshsync.store.base import Store
from meshsync.store.sqlite import SQLiteStore

ROOT_FILE = "root.crt"


def system_clock() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def load_trust(home: Home, store: Store) -> Authorizer:
    """The home's trust policy: a :class:`meshsync.trust.TrustStore` anchored at the
    installed ``root.crt`` and loaded with every stored credential, or
    :class:`OpenTrust` while the device is not enrolled."""
    root = home.path / ROOT_FILE
    if not root.exists():
        return OpenTrust()
    from meshsync.errors import AuthorizationError
    from meshsync.trust import TrustStore

    trust = TrustStore([root.read_bytes()])
    for blob in store.credentials():
        try:
            trust.add(blob)
        except AuthorizationError:
            continue  # kept from before a root change; it no longer verifies
    return trust


SCHEMAS = {"coklit": "meshsync.coklit"}
"""``schema`` values of ``config.toml`` -> the module whose ``register(node)`` adds the
schema's validators (design.md §4). Imported by name: the examples are optional."""


def use_schema(node: Node, home: Home) -> None:
    """Register the validators of the home's ``schema`` setting, if it has one.

    Raises :class:`~meshsync.errors.UsageError` for a schema this build does not know.
    """
    name = home.config().get("schema")
    if name is None:
        return
    if name not in SCHEMAS:
        raise UsageError(f"{home.config_path}: unknown schema {name!r} "
                         f"(known: {', '.join(sorted(SCHEMAS))})")
    importlib.import_module(SCHEMAS[name]).register(node)


def open_store(home: Home, dsn: str | None = None) -> Store:
    """The home's SQLite store, or the PostgreSQL store at ``dsn``
    (``postgresql://...``; needs the ``central`` extra)."""
    if dsn is None:
        return SQLiteStore(home.store_path)
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise UsageError(f"--store must be a postgresql:// URL, got {dsn!r}")
    from meshsync.store.postgres import PostgresStore

    return PostgresStore(dsn)


@contextmanager
def open_node(path: str | Path, *, store: str | None = None) -> Iterator[Node]:
    """Open the node at home ``path`` (must exist: see ``meshsync init``).

    ``store`` optionally names a PostgreSQL database (central) instead of the home's
    SQLite file. If the home's ``config.toml`` names a ``schema`` (e.g.
    ``schema = "coklit"``), its validators are registered: see :func:`use_schema`.

    Raises :class:`~meshsync.errors.NotFoundError` if there is no home there and
    :class:`~meshsync.errors.StorageError` if the store cannot be opened.
    """
    home = Home.open(Path(path))
    key = home.load_key()
    store_ = open_store(home, store)
    try:
        node = Node(store_, key, system_clock, trust=load_trust(home, store_),
                    default_partition=home.default_partition())
        use_schema(node, home)
        yield node
    finally:
        store_.close()
