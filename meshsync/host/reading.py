"""Open a home only to read its records: the read commands' short start.

``meshsync get``, ``ls`` and ``conflicts`` run often on a phone, and each is a new
process, so their start-up is most of their time (``bench/cli_start.py``). A read needs
the home's SQLite store and nothing that signs, authorises or validates: no private
key, no trust store (X.509, ``cryptography``), no clock, no schema entry points, no
signature pool. :func:`open_reader` opens just that, and refuses a home exactly where
:func:`meshsync.host.local.open_node` does for what a read touches: no home there, a
key file readable by others or not an Ed25519 key, a bad ``config.toml`` (unknown key,
``partition``, ``storage_reserve_mb``). It writes nothing but the home folder's mode
(0700, as ``open_node``) and what SQLite itself does on opening; the proven time and the
own certificate that ``open_node`` keeps in the store wait for the next command that
opens a node. The home's ``schema`` setting is not looked up: reads do not validate.

Example::

    from meshsync.host.reading import open_reader
    with open_reader("/data/phone-a") as reader:
        print(reader.get("voters", "v-0001").fields)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshsync.host import atrest
from meshsync.host.files import make_home_private
from meshsync.host.home import Home
from meshsync.host.reserve import disk_reserve
from meshsync.model.change import check_partition
from meshsync.model.errors import UsageError
from meshsync.replica.records import RecordReader
from meshsync.store.base import Store
from meshsync.store.sqlite import SQLiteStore


@contextmanager
def open_reader(path: str | Path) -> Iterator[RecordReader]:
    """Open the records of the home at ``path`` (an SQLite home) for reading.

    A refused read (:class:`~meshsync.model.errors.UsageError`, e.g. a key held in
    several partitions) says, as under ``open_node``, when the device's date is wrong:
    the trust store is loaded then, and only then.

    Raises :class:`~meshsync.model.errors.NotFoundError` if there is no home there,
    :class:`~meshsync.model.errors.UsageError` for a key file or ``config.toml`` that
    ``open_node`` refuses, and :class:`~meshsync.model.errors.StorageError` if the store
    cannot be opened.
    """
    home = Home.open(Path(path))
    home.check_key()
    home.check_not_wiped()
    make_home_private(home.path)
    store = SQLiteStore(home.store_path, atrest.store_key(home.path))
    try:
        check_partition(home.default_partition())
        disk_reserve(home)  # the setting is checked, as open_node checks it
        try:
            yield RecordReader(store)
        except UsageError as exc:
            better = _explained(exc, home, store)
            if better is exc:
                raise
            raise better from exc
    finally:
        store.close()


def _explained(exc: UsageError, home: Home, store: Store) -> UsageError:
    """``exc`` with the wrong-date sentence when the clock is implausible
    (:func:`meshsync.host.clock.explain_refusal`); ``exc`` itself otherwise, or when the
    trust store cannot be loaded (then ``exc`` is what the officer must see)."""
    from meshsync.host.clock import explain_with_trust
    from meshsync.host.local import load_trust

    try:
        trust = load_trust(home, store)
    except (UsageError, OSError):
        return exc
    return explain_with_trust(exc, trust)
