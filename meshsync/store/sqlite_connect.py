"""Opening an SQLite file clear (stdlib ``sqlite3``) or encrypted (SQLCipher).

:class:`~meshsync.store.sqlite.SQLiteStore` takes a connection from :func:`connect`;
an encrypted store opens through SQLCipher (the ``sqlcipher3`` package, the DB-API 2
module of SQLCipher 4, imported only then) keyed with a raw 32-byte key: every page
of the database and of its WAL is AES-256 encrypted and HMAC-SHA256 authenticated
(:data:`CIPHER_SETTINGS`).
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


#: SQLCipher's settings after the key, on every open (they are not kept in the file, so a
#: store opens only with the same ones): 16 KiB pages and HMAC-SHA256 cost about 0.6 of
#: the cipher's CPU with SQLCipher 4's defaults (4 KiB, HMAC-SHA512), measured with
#: bench/at_rest.py; HMAC-SHA256 keeps each page authenticated (docs/architecture.md §6).
CIPHER_SETTINGS = ("PRAGMA cipher_page_size = 16384",
                   "PRAGMA cipher_hmac_algorithm = HMAC_SHA256")


def key_statements(key: bytes) -> list[str]:
    """The statements that open an SQLCipher file with the raw 32-byte ``key``, in
    order: quiet logging, the key itself (no key derivation), :data:`CIPHER_SETTINGS`."""
    return ["PRAGMA cipher_log_level = NONE",  # a wrong key: our error, no stderr
            f"PRAGMA key = \"x'{key.hex()}'\"", *CIPHER_SETTINGS]


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


#: The first 16 bytes of every clear SQLite database file (sqlite.org/fileformat.html §1.3.1).
SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_unreadable(path: Path) -> None:
    """StorageError if ``path`` exists but is no clear SQLite file (an encrypted store
    whose home lost its ``datakey.json``, or another file), instead of SQLite's "file is
    not a database" at the first statement."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot open store {path}: {exc}") from exc
    if head and head != SQLITE_HEADER:
        raise StorageError(Msg(
            "cannot open store %(path)s: it is encrypted (or not an SQLite file) and this "
            "home has no datakey.json to open it with; put the home's datakey.json back, "
            "or restore the home from its backup", path=str(path)))


def connect(path: Path | str, key: bytes | None) -> tuple[sqlite3.Connection, Any]:
    """``(connection, the driver's DatabaseError class)``: stdlib ``sqlite3`` without a
    key, SQLCipher keyed with ``key`` otherwise. A key that does not open the file
    (another key, or a clear store) raises :class:`StorageError`."""
    if key is None:
        _refuse_unreadable(Path(path))
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
        for statement in key_statements(key):
            db.execute(statement)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except driver.DatabaseError as exc:
        db.close()
        raise StorageError(Msg("cannot open store %(path)s: it does not open with this "
                               "home's key (another key, or a store that is not "
                               "encrypted)", path=str(path))) from exc
    return cast(sqlite3.Connection, db), driver.DatabaseError
