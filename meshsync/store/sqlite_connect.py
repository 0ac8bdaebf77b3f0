"""Opening an SQLite file clear (stdlib ``sqlite3``) or encrypted (SQLCipher).

:class:`~meshsync.store.sqlite.SQLiteStore` takes a connection from :func:`connect`;
an encrypted store opens through SQLCipher (the ``sqlcipher3`` package, the DB-API 2
module of SQLCipher 4, imported only then) keyed with a raw 32-byte key: every page
of the database and of its WAL is AES-256 encrypted and HMAC-SHA512 authenticated.
The key is used as it is (``PRAGMA key = "x'...'"``), so SQLCipher runs no key
derivation of its own (docs/architecture.md §6, "Encrypted homes").
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from meshsync.model.errors import StorageError, UsageError
from meshsync.model.text import Msg

#: The length of an encrypted store's key, bytes.
KEY_BYTES = 32


def cipher_driver() -> ModuleType:
    """SQLCipher's DB-API 2 module (``sqlcipher3.dbapi2``).

    Raises :class:`StorageError` saying how to install it when it is absent.
    """
    try:
        from sqlcipher3 import dbapi2  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise StorageError(Msg("an encrypted store needs SQLCipher: install it with "
                               "pip install 'meshsync[encrypted]' (the sqlcipher3 "
                               "package)")) from exc
    return cast(ModuleType, dbapi2)


def connect(path: Path | str, key: bytes | None) -> tuple[sqlite3.Connection, Any]:
    """``(connection, the driver's DatabaseError class)``: stdlib ``sqlite3`` without a
    key, SQLCipher keyed with ``key`` otherwise. A key that does not open the file
    (another key, or a clear store) raises :class:`StorageError`."""
    if key is None:
        return (sqlite3.connect(str(path), isolation_level=None, check_same_thread=False),
                sqlite3.DatabaseError)
    if len(key) != KEY_BYTES:
        raise UsageError(f"a store key is {KEY_BYTES} bytes, not {len(key)}")
    driver = cipher_driver()
    try:
        db = driver.connect(str(path), isolation_level=None, check_same_thread=False)
    except driver.DatabaseError as exc:
        raise StorageError(f"cannot open store {path}: {exc}") from exc
    try:
        db.execute("PRAGMA cipher_log_level = NONE")  # a wrong key: our error, no stderr
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except driver.DatabaseError as exc:
        db.close()
        raise StorageError(Msg("cannot open store %(path)s: it does not open with this "
                               "home's key (another key, or a store that is not "
                               "encrypted)", path=str(path))) from exc
    return cast(sqlite3.Connection, db), driver.DatabaseError
