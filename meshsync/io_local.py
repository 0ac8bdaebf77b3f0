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

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshsync.home import Home
from meshsync.node import Node
from meshsync.policy import Authorizer, OpenTrust
from meshsync.store.sqlite import SQLiteStore

ROOT_FILE = "root.crt"


def system_clock() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def load_trust(home: Home, store: SQLiteStore) -> Authorizer:
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


@contextmanager
def open_node(path: str | Path) -> Iterator[Node]:
    """Open the node at home ``path`` (must exist: see ``meshsync init``).

    Raises :class:`~meshsync.errors.NotFoundError` if there is no home there and
    :class:`~meshsync.errors.StorageError` if the store cannot be opened.
    """
    home = Home.open(Path(path))
    key = home.load_key()
    store = SQLiteStore(home.store_path)
    try:
        node = Node(store, key, system_clock, trust=load_trust(home, store),
                    default_partition=home.default_partition())
        yield node
    finally:
        store.close()
