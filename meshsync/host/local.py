"""Open a node on a home directory, with the system clock: the library's front door.

This is the one place outside the I/O layer that reads the wall clock (the node
itself is given a clock function, never reads one).

Example::

    from meshsync.host.local import open_node
    with open_node("/data/phone-a") as node:
        node.put("voters", "v-0001", {"nama": "Yosina", "status": "ms"})
        print(node.get("voters", "v-0001").fields)
"""

from __future__ import annotations

import contextlib
import importlib
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshsync.host.home import Home
from meshsync.host.verify_pool import shared_verifier
from meshsync.model.errors import StorageLowError, UsageError
from meshsync.replica.node import Node
from meshsync.replica.policy import Authorizer, OpenTrust
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
    from meshsync.model.errors import AuthorizationError
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
schema's validators (docs/architecture.md §4), and whose ``import_file(node, path,
batch_size=N)`` (optional) imports a data file and returns its report as JSON. Imported
by name: the examples are optional, and the library never imports them itself."""


def use_schema(node: Node, home: Home) -> None:
    """Register the validators of the home's ``schema`` setting, if it has one.

    Raises :class:`~meshsync.model.errors.UsageError` for a schema this build does not know.
    """
    name = home.config().get("schema")
    if name is None:
        return
    if name not in SCHEMAS:
        raise UsageError(f"{home.config_path}: unknown schema {name!r} "
                         f"(known: {', '.join(sorted(SCHEMAS))})")
    importlib.import_module(SCHEMAS[name]).register(node)


def schema_import(node: Node, name: str, path: Path, *, batch_size: int) -> dict[str, object]:
    """Import the file at ``path`` into ``node`` with schema ``name``'s importer (its
    module's ``import_file``, ``batch_size`` rows per change); the report as JSON.

    Raises :class:`~meshsync.model.errors.UsageError` for a schema this build does not
    know or one without an importer, and whatever the importer raises (a file it
    cannot read, a write refused).
    """
    if name not in SCHEMAS:
        raise UsageError(f"unknown schema {name!r} (known: {', '.join(sorted(SCHEMAS))})")
    importer = getattr(importlib.import_module(SCHEMAS[name]), "import_file", None)
    if importer is None:
        raise UsageError(f"schema {name!r} has no importer")
    report = importer(node, path, batch_size=batch_size)
    if not isinstance(report, dict):
        raise TypeError(f"schema {name!r} importer returned {type(report).__name__}")
    return report


def adopt_schema(home: Home, name: str) -> bool:
    """Set ``schema = NAME`` in the home's ``config.toml`` (a key of :data:`SCHEMAS`)
    unless it is set already; returns True if it was set now (register it on an open
    node with :func:`use_schema`).

    Raises :class:`~meshsync.model.errors.UsageError` if the home has another schema.
    """
    config = home.config()
    current = config.get("schema")
    if current == name:
        return False
    if current is not None:
        raise UsageError(f"{home.config_path} has schema = {current!r}, not {name!r}")
    home.write_config({**config, "schema": name})
    return True


#: Default of ``storage_reserve_mb`` in ``config.toml``: free space (MiB) on the home's
#: disk kept for local edits; received data is refused below it (docs/failure-cases.md B17).
DEFAULT_RESERVE_MB = 64
#: Largest accepted ``storage_reserve_mb`` (1 EiB in MiB): above it is a typo.
MAX_RESERVE_MB = 2**40

#: Disk bytes a received byte may take before checkpoints reclaim any: the change body,
#: the record states built from it, and the WAL copy of both.
NEED_FACTOR = 3


class DiskReserve:
    """An ``inbound_guard`` for :class:`~meshsync.replica.node.Node`: refuses received data that
    would bring free space on ``path``'s disk below ``reserve_bytes``.

    Calling it with ``incoming`` (bytes about to be received) raises
    :class:`~meshsync.model.errors.StorageLowError` if free space minus
    ``NEED_FACTOR * incoming`` is below the reserve. Local edits are never checked,
    so the officer can go on typing from the reserve.
    """

    def __init__(self, path: Path, reserve_bytes: int) -> None:
        self.path, self.reserve = path, reserve_bytes

    def __call__(self, incoming: int) -> None:
        free = shutil.disk_usage(self.path).free
        if free - NEED_FACTOR * incoming < self.reserve:
            raise StorageLowError(
                f"storage low: {_size(free)} free on the disk of {self.path}, "
                f"{_size(incoming)} arriving, and {_size(self.reserve)} "
                "are kept for local edits (storage_reserve_mb); received changes are "
                "refused until space is freed; local edits still work")


def _size(n: int) -> str:
    """``n`` bytes for people: KiB below 1 MiB, else MiB with one decimal."""
    return f"{n / 2**10:.0f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def storage_status(node: Node) -> dict[str, object] | None:
    """``{"free_mb", "reserve_mb", "low"}`` of the node's disk reserve (MiB, rounded to
    0.1), or None when the node has none (a PostgreSQL store). ``low`` is True when
    received changes are being refused (free space below the reserve)."""
    guard = node.inbound_guard
    if not isinstance(guard, DiskReserve):
        return None
    free = shutil.disk_usage(guard.path).free
    return {"free_mb": round(free / 2**20, 1), "reserve_mb": round(guard.reserve / 2**20, 1),
            "low": free < guard.reserve}


def disk_reserve(home: Home) -> DiskReserve:
    """The home's :class:`DiskReserve` (``storage_reserve_mb`` in ``config.toml``).

    Raises :class:`~meshsync.model.errors.UsageError` if the setting is not a number of MiB
    from 0 to :data:`MAX_RESERVE_MB`.
    """
    value = home.config().get("storage_reserve_mb", DEFAULT_RESERVE_MB)
    if type(value) not in (int, float) or not 0 <= value <= MAX_RESERVE_MB:  # NaN fails too
        raise UsageError(f"{home.config_path}: 'storage_reserve_mb' must be a number of "
                         f"MiB from 0 to {MAX_RESERVE_MB}, got {value!r}")
    return DiskReserve(home.path, int(value * 2**20))


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
    from meshsync.model.errors import AuthorizationError
    from meshsync.model.identity import sha256
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

    Raises :class:`~meshsync.model.errors.NotFoundError` if there is no home there and
    :class:`~meshsync.model.errors.StorageError` if the store cannot be opened.
    """
    home = Home.open(Path(path))
    key = home.load_key()
    store_ = open_store(home, store)
    try:
        node = Node(store_, key, system_clock, trust=load_trust(home, store_),
                    default_partition=home.default_partition())
        node.verifier = shared_verifier()
        if store is None:  # a PostgreSQL store's disk is the database server's
            node.inbound_guard = disk_reserve(home)
        keep_own_certificate(node, home)
        use_schema(node, home)
        yield node
    finally:
        store_.close()
