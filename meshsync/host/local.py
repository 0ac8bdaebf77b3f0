"""Open a node on a home directory, with the system clock: the library's front door.

This is the one place outside the I/O layer that reads the wall clock (the node
itself is given a clock function, never reads one): the node's clock is the system
clock unless it is clearly wrong, then the proven time (:mod:`meshsync.host.clock`).

Example::

    from meshsync.host.local import open_node
    with open_node("/data/phone-a") as node:
        node.put("voters", "v-0001", {"nama": "Yosina", "status": "ms"})
        print(node.get("voters", "v-0001").fields)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from meshsync.host import atrest
from meshsync.host.clock import (
    TrustedClock,
    explain_refusal,
    keep_proven_time,
    load_proven_time,
)
from meshsync.host.files import make_home_private
from meshsync.host.home import Home
from meshsync.host.reserve import (  # noqa: F401 - the others: imported from here before
    DEFAULT_RESERVE_MB,
    MAX_RESERVE_MB,
    NEED_FACTOR,
    DiskReserve,
    disk_reserve,
    storage_status,
)
from meshsync.host.verify_pool import shared_verifier
from meshsync.model.errors import UsageError
from meshsync.replica.node import Node
from meshsync.replica.policy import Authorizer, OpenTrust
from meshsync.store.base import Store
from meshsync.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from meshsync.replica.schema import SchemaPackage
    from meshsync.trust.schemadoc import SchemaBook

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

    try:
        trust = TrustStore([root.read_bytes()])
    except (UsageError, OSError) as exc:
        raise UsageError(f"cannot use {root}: {exc}; install it again with `meshsync "
                         "enroll --home HOME CERT` (the certificate file the authority "
                         "issued, which ends with the root)") from None
    for blob in store.credentials():
        try:
            trust.add(blob)
        except AuthorizationError:
            continue  # kept from before a root change; it no longer verifies
    load_proven_time(trust, store)
    return trust


#: The entry point group through which a distribution adds a schema: the entry point's
#: name is a ``schema`` value of ``config.toml``, its object a ``register(node)`` that adds
#: the schema's validators (docs/architecture.md §4). meshsync itself declares ``coklit``
#: (``meshsync.coklit:register``); the library never imports a schema by name.
SCHEMA_GROUP = "meshsync.schemas"


def installed_schemas() -> dict[str, EntryPoint]:
    """The schemas installed in this environment: name -> entry point of
    :data:`SCHEMA_GROUP` (the first one wins if two distributions use one name)."""
    from importlib.metadata import entry_points  # slow to import: only for a schema

    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=SCHEMA_GROUP):
        found.setdefault(entry.name, entry)
    return found


def schema_register(name: str) -> Callable[[Node], object]:
    """The ``register(node)`` function of the installed schema ``name``.

    Raises :class:`~meshsync.model.errors.UsageError` naming the installed schemas if
    none is called ``name``, or if its entry point does not load.
    """
    schemas = installed_schemas()
    if name not in schemas:
        raise UsageError(f"unknown schema {name!r} (installed: "
                         f"{', '.join(sorted(schemas)) or 'none'})")
    try:
        register = schemas[name].load()
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"schema {name!r} is installed but does not load "
                         f"({schemas[name].value}): {exc}") from exc
    if not callable(register):
        raise UsageError(f"schema {name!r}: {schemas[name].value} is not a function")
    return cast(Callable[[Node], object], register)


def use_schema(node: Node, home: Home) -> None:
    """Register the validators of the home's ``schema`` setting, if it has one.

    Raises :class:`~meshsync.model.errors.UsageError` for a schema that is not installed
    (the message lists the installed ones) or does not load.
    """
    name = home.config().get("schema")
    if name is None:
        return
    try:
        register = schema_register(str(name))
    except UsageError as exc:
        raise UsageError(f"{home.config_path}: {exc}") from exc
    register(node)


#: The entry point group of schema packages: the named rules a signed schema document
#: selects (:class:`meshsync.replica.schema.SchemaPackage`). meshsync declares ``coklit``.
PACKAGE_GROUP = "meshsync.schema_packages"


def schema_package(name: str) -> SchemaPackage | None:
    """The installed schema package ``name`` (entry point of :data:`PACKAGE_GROUP`), or
    None if none is installed under that name or it does not load."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=PACKAGE_GROUP, name=name):
        try:
            return cast("SchemaPackage", entry.load())
        except (ImportError, AttributeError):
            return None
    return None


def use_schema_documents(node: Node) -> None:
    """Let the node's signed schema documents find their named rules (loaded once per
    package name: now for the documents held, later for those that arrive)."""
    cache: dict[str, SchemaPackage | None] = {}

    def lookup(name: str) -> SchemaPackage | None:
        if name not in cache:
            cache[name] = schema_package(name)
        return cache[name]

    node.validators.packages = lookup
    book: SchemaBook | None = getattr(node.trust, "schemas", None)
    if book is None:
        return
    for collection in book.collections():
        doc = book.newest(collection)
        name = doc.body.get("package") if doc is not None else None
        if isinstance(name, str):
            lookup(name)  # now: a package may set up more than rules (coklit: progress)


#: The entry point group of schema importers: ``import_file(node, path, batch_size=N)``
#: that imports a data file (coklit: a DPT CSV) and returns its report as JSON.
IMPORTER_GROUP = "meshsync.schema_importers"


def schema_import(node: Node, name: str, path: Path, *, batch_size: int) -> dict[str, object]:
    """Import the file at ``path`` into ``node`` with schema ``name``'s importer (the
    entry point ``name`` of :data:`IMPORTER_GROUP`, ``batch_size`` rows per change);
    the report as JSON.

    Raises :class:`~meshsync.model.errors.UsageError` for a schema with no importer
    installed, and whatever the importer raises (a file it cannot read, a write refused).
    """
    from importlib.metadata import entry_points

    found = list(entry_points(group=IMPORTER_GROUP, name=name))
    if not found:
        raise UsageError(f"schema {name!r} has no importer installed")
    importer = cast(Callable[..., object], found[0].load())
    report = importer(node, path, batch_size=batch_size)
    if not isinstance(report, dict):
        raise TypeError(f"schema {name!r} importer returned {type(report).__name__}")
    return report


def adopt_schema(home: Home, name: str) -> bool:
    """Set ``schema = NAME`` in the home's ``config.toml`` (an installed schema)
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


#: libpq's keyword/value form of a connection string (``host=/run/postgresql dbname=kpu``),
#: the form docs/central-sql.md shows; the other form is a ``postgresql://`` URL.
_CONNINFO_PAIR = re.compile(r"\s*[A-Za-z_]+\s*=")


def open_store(home: Home, dsn: str | None = None) -> Store:
    """The home's SQLite store, or the PostgreSQL store at ``dsn`` (a libpq connection
    string: ``postgresql://...`` or ``host=... dbname=...``; needs the ``central`` extra).

    An encrypted home's store opens with its data key (:func:`meshsync.host.atrest.
    store_key`: kept for this process, else from the passphrase); raises
    :class:`~meshsync.host.atrest.LockedError` or ``WrongKeyError`` if it cannot."""
    home.check_not_wiped()
    if dsn is None:
        make_home_private(home.path)
        return SQLiteStore(home.store_path, atrest.store_key(home.path))
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
def open_node(path: str | Path, *, store: str | None = None,
              home_key: bytes | None = None) -> Iterator[Node]:
    """Open the node at home ``path`` (must exist: see ``meshsync init``).

    ``home_key`` (32 bytes) is the key the host app keeps for an encrypted home made
    with it (:func:`meshsync.host.atrest.create`); a home encrypted with a passphrase
    takes it from the environment or the CLI's prompt (:mod:`meshsync.host.atrest`).

    ``store`` optionally names a PostgreSQL database (central) instead of the home's
    SQLite file. Every collection with a signed schema document in the store is
    validated by its newest version (:mod:`meshsync.replica.schema`). If the home's
    ``config.toml`` names a ``schema`` (``schema = "coklit"``, older homes), its
    validators are registered for collections without a document: see
    :func:`use_schema`.

    Raises :class:`~meshsync.model.errors.NotFoundError` if there is no home there and
    :class:`~meshsync.model.errors.StorageError` if the store cannot be opened.
    """
    home = Home.open(Path(path))
    key = home.load_key()
    if home_key is not None and store is None:
        atrest.unlock(home.path, home_key=home_key)
    store_ = open_store(home, store)
    try:
        trust = load_trust(home, store_)
        node = Node(store_, key, TrustedClock(trust), trust=trust,
                    default_partition=home.default_partition())
        node.verifier = shared_verifier()
        if store is None:  # a PostgreSQL store's disk is the database server's
            node.inbound_guard = disk_reserve(home)
        keep_own_certificate(node, home)
        keep_proven_time(node)
        use_schema(node, home)
        use_schema_documents(node)
        try:
            yield node
        except UsageError as exc:  # a refused action also says when the date is wrong
            better = explain_refusal(exc, node)
            if better is exc:
                raise
            raise better from exc
        keep_proven_time(node)
    finally:
        store_.close()
