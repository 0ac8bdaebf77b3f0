"""Benchmark: the cost of encrypting a home at rest, two ways, against clear SQLite.

Run from the repository, inside the venv (``pip install apsw-sqlite3mc`` for the
page-level rows; without it they are skipped)::

    python bench/at_rest.py                  # 100,000 voter records
    python bench/at_rest.py --records 20000 --json

The same run writes the same fictitious voter records (bench/bundle_import.py's
generator, msgpack-packed, ~230 bytes) into a fresh database each way, one row per
record, 1,000 rows per transaction, WAL, ``synchronous=FULL`` (the store's settings),
then reads every row back:

* **clear**: Python's ``sqlite3``, the baseline;
* **field AEAD**: ``sqlite3`` with each value AES-256-GCM-encrypted under a per-home key
  before the insert and decrypted after the read (what "authenticated encryption of
  change bodies and record values" costs; keys stay clear);
* **sqlcipher**: SQLCipher 4 through ``sqlcipher3`` (the DB-API module the store uses
  for an encrypted home: ``meshsync[encrypted]``), keyed with a raw 32-byte key
  (AES-256-CBC and HMAC-SHA256 per 16 KiB page, the store's settings), and the same
  driver without a key (**sqlcipher3 no key**: its own SQLite build and module, no
  cipher); skipped when not installed;
* **apsw clear** and **page cipher**: ``apsw`` built with SQLite3 Multiple Ciphers
  (``apsw-sqlite3mc``), without and with ``PRAGMA key`` (its default cipher,
  ChaCha20-Poly1305 per page), so the cipher's cost is told apart from apsw's own.

Ratios are against the clear row of the same run (docs/architecture.md §6, "Encrypted
homes"). No real personal data.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).parent))
from bundle_import import voters  # a bench script beside this one

SCHEMA = ("CREATE TABLE records (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
          "fields BLOB NOT NULL)")
Rows = list[tuple[str, bytes]]


def run_sqlite(path: Path, rows: Rows, seal: Callable[[bytes], bytes],
               unseal: Callable[[bytes], bytes], key: bytes | None = None
               ) -> tuple[float, float]:
    if key is None:
        db = sqlite3.connect(path, isolation_level=None)
    else:  # the store's way (meshsync.store.sqlite._connect)
        from sqlcipher3 import dbapi2

        db = dbapi2.connect(str(path), isolation_level=None)
        if key:  # b"": the same driver without a key, to tell its own cost apart
            from meshsync.store.sqlite_connect import key_statements

            for statement in key_statements(key):
                db.execute(statement)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(SCHEMA)
    start = time.perf_counter()
    for i in range(0, len(rows), 1000):
        db.execute("BEGIN")
        db.executemany("INSERT INTO records (key, fields) VALUES (?, ?)",
                       [(k, seal(v)) for k, v in rows[i:i + 1000]])
        db.execute("COMMIT")
    write = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(len(unseal(v)) > 0 for (v,) in db.execute("SELECT fields FROM records"))
    read = time.perf_counter() - start
    db.close()
    assert count == len(rows)
    return write, read


def run_apsw(path: Path, rows: Rows, key: str | None) -> tuple[float, float]:
    import apsw

    db = apsw.Connection(str(path))
    if key is not None:
        db.execute(f"PRAGMA key='{key}'")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(SCHEMA)
    start = time.perf_counter()
    for i in range(0, len(rows), 1000):
        with db:
            db.executemany("INSERT INTO records (key, fields) VALUES (?, ?)", rows[i:i + 1000])
    write = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(len(v) > 0 for (v,) in db.execute("SELECT fields FROM records"))
    read = time.perf_counter() - start
    db.close()
    assert count == len(rows)
    return write, read


def measure(count: int) -> dict[str, Any]:
    rows = [(k, msgpack.packb(f, use_bin_type=True)) for _, k, f in voters(count)]
    aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(value: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, value, None)

    def unseal(value: bytes) -> bytes:
        return aead.decrypt(value[:12], value[12:], None)

    out: dict[str, Any] = {"records": count}
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        d = Path(tmp)
        out["clear"] = run_sqlite(d / "clear.db", rows, lambda v: v, lambda v: v)
        out["field AEAD"] = run_sqlite(d / "field.db", rows, seal, unseal)
        try:
            out["sqlcipher3 no key"] = run_sqlite(d / "nokey.db", rows, lambda v: v,
                                                  lambda v: v, key=b"")
            out["sqlcipher"] = run_sqlite(d / "cipher.db", rows, lambda v: v, lambda v: v,
                                          key=os.urandom(32))
            out["sqlcipher hides values"] = rows[0][1][:40] in (d / "clear.db").read_bytes() \
                and rows[0][1][:40] not in (d / "cipher.db").read_bytes()
        except ImportError:
            out["sqlcipher"] = "not installed (pip install 'meshsync[encrypted]')"
        try:
            out["apsw clear"] = run_apsw(d / "apsw.db", rows, None)
            out["page cipher"] = run_apsw(d / "mc.db", rows, "bench passphrase")
            clear_bytes = (d / "apsw.db").read_bytes()
            out["page cipher hides values"] = rows[0][1][:40] in clear_bytes and \
                rows[0][1][:40] not in (d / "mc.db").read_bytes()
        except ImportError:
            out["apsw"] = "not installed (pip install apsw-sqlite3mc)"
    base = out["clear"][0] + out["clear"][1]
    for name in ("field AEAD", "sqlcipher3 no key", "sqlcipher", "apsw clear",
                 "page cipher"):
        if isinstance(out.get(name), tuple):
            out[f"{name} ratio"] = (out[name][0] + out[name][1]) / base
    if "page cipher" in out:
        apsw_base = out["apsw clear"][0] + out["apsw clear"][1]
        out["page cipher / apsw clear"] = (out["page cipher"][0] + out["page cipher"][1]) \
            / apsw_base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.records)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['records']:,} records; seconds write / read; ratio to clear")
    for name in ("clear", "field AEAD", "sqlcipher3 no key", "sqlcipher", "apsw clear",
                 "page cipher"):
        if isinstance(result.get(name), tuple):
            w, r = result[name]
            ratio = result.get(f"{name} ratio", 1.0)
            print(f"{name:<18}{w:>8.2f}{r:>8.2f}{ratio:>8.2f}")
    if "page cipher / apsw clear" in result:
        print(f"page cipher / apsw clear: {result['page cipher / apsw clear']:.2f}; the file "
              f"hides the values: {result['page cipher hides values']}")


if __name__ == "__main__":
    main()
