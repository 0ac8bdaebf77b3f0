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

import contextlib
import importlib
import re
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
from meshsync.verify_pool import shared_verifier

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


#: libpq's keyword/value form of a connection string (``host=/run/postgresql dbname=kpu``),
#: the form docs/central-sql.md shows; the other form is a ``postgresql://`` URL.
_CONNINFO_PAIR = re.compile(r"\s*[A-Za-z_]+\s*=")


def open_store(home: Home, dsn: str | None = None) -> Store:
    """The home's SQLite store, or the PostgreSQL store at ``dsn`` (a libpq connection
    string: ``postgresql://...`` or ``host=... dbname=...``; needs the ``central`` extra)."""
    if dsn is None:
        return SQLiteStore(home.store_path)
    if not (dsn.startswith(("postgresql://", "postgres://")) or _CONNINFO_PAIR.match(dsn)):
        raise UsageError(f"--store must be a PostgreSQL connection string "
                         f"(postgresql://... or host=... dbname=...), got {dsn!r}")
    from meshsync.store.postgres import PostgresStore

    return PostgresStore(dsn)


def keep_own_certificate(node: Node, home: Home) -> None:
    """Put the home's own certificate chain (``device.crt`` without the root) in the
    store if it is not there yet.

    ``meshsync enroll`` stores it in the home's SQLite file; a store opened with
    ``--store`` (central's PostgreSQL) starts without it, and then the device may not
    write (no certificate for its own changes) and its peers never learn its role
    from it (its custody receipts are refused as from an unknown device).
    """
    if not home.cert_path.exists() or not (home.path / ROOT_FILE).exists():
        return
    from meshsync.errors import AuthorizationError
    from meshsync.identity import sha256
    from meshsync.trust.profile import parse_blob

    held = {sha256(blob) for blob in node.store.credentials()}
    try:
        chain = [info.der for info in parse_blob(home.cert_path.read_bytes())
                 if not info.is_root]
    except AuthorizationError:
        return  # not a certificate this build reads: nothing of ours to share
    for der in chain:
        if sha256(der) not in held:
            with contextlib.suppress(AuthorizationError):  # not from our authority
                node.add_credential(der)


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
        node.verifier = shared_verifier()
        keep_own_certificate(node, home)
        use_schema(node, home)
        yield node
    finally:
        store_.close()
