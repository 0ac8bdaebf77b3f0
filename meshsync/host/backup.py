"""Backing up and restoring an SQLite home (``meshsync backup``, ``meshsync restore``).

A backup is one gzip tar file (mode 0600) holding ``backup.json`` (what it holds), a
consistent copy of ``store.sqlite`` made with SQLite's online backup API while a
daemon may be writing (it reads through the WAL, so the copy is one committed state),
and the home's ``config.toml``, ``device.crt``, ``root.crt`` and, on a sub-authority's
laptop, ``authority.crt`` and ``authority.csr``. The backup of an encrypted home holds
its store encrypted as it is and its ``datakey.json`` (the data key wrapped under the
passphrase): the restored home opens with the same passphrase, and the file alone
reveals nothing.

**The device's private keys are never in a backup** (``device.key``, ``next.key``,
``retired-keys/``, nor ``authority.key``). A copy that could sign as the device would,
on its first edit, sign a second change with a seq the first device already used: a
fork of its own feed. A restored home therefore gets a new key and must be given a
certificate for it through the rotation path (``meshsync authority rotate`` of the old
device at its authority, then ``meshsync enroll``); until then it holds every record of
the backup but is not enrolled, so it signs nothing any peer accepts, and never as the
old device. A stolen backup holds voters' data but no key to sign with.

``restore`` refuses a home that exists (a ``device.key`` or any file in it) and a home
whose lock another process holds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from meshsync.host import atrest
from meshsync.host.files import fsync_dir, write_private
from meshsync.host.home import CERT_FILE, CONFIG_FILE, CSR_FILE, STORE_FILE, Home
from meshsync.host.lock import HomeBusyError, read_holder, try_lock
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import DeviceKey
from meshsync.model.text import Msg
from meshsync.trust import make_csr, parse_blob

MANIFEST = "backup.json"
FORMAT = "meshsync-home-backup/1"
#: Files of a home copied as they are (those present).
PLAIN_FILES = (CONFIG_FILE, CERT_FILE, "root.crt", "authority.crt", "authority.csr",
               atrest.KEY_FILE)
#: Pages SQLite copies per step; between steps the daemon may write.
PAGES_PER_STEP = 256
#: Where the old device's certificate goes in a restored home (for reference; the
#: authority's ``rotate --old-cert`` takes it).
OLD_CERT_FILE = "restored-from.crt"

Progress = Callable[[int, int], None]


def _open(path: str, key: bytes | None, **kwargs: Any) -> sqlite3.Connection:
    """A plain connection to ``path``; through SQLCipher keyed with ``key`` if given."""
    if key is None:
        return sqlite3.connect(path, **kwargs)  # type: ignore[no-any-return]
    from meshsync.store.sqlite_connect import cipher_driver, key_statements

    db = cipher_driver().connect(path, **kwargs)
    for statement in key_statements(key):
        db.execute(statement)
    return cast(sqlite3.Connection, db)


def copy_store(source: Path, dest: Path, progress: Progress | None = None,
               key: bytes | None = None) -> None:
    """Copy the SQLite database ``source`` to ``dest`` with the online backup API:
    consistent with the WAL while another process writes. ``progress(copied, total)``
    is called after each step of :data:`PAGES_PER_STEP` pages. An encrypted store
    (``key``, its data key) is copied page by page through SQLCipher into a copy
    encrypted with the same key: the backup is never clear."""
    src = _open(f"file:{source}?mode=ro", key, uri=True, timeout=30)
    try:
        dst = _open(str(dest), key)
        try:
            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            src.backup(dst, pages=PAGES_PER_STEP, progress=step)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def store_heads(store_file: Path, author: bytes, key: bytes | None = None
                ) -> dict[str, int]:
    """``partition -> head seq`` of ``author``'s feeds in the SQLite file ``store_file``
    (encrypted with ``key`` if given)."""
    from meshsync.host.enrol import heads_of
    from meshsync.store.sqlite import SQLiteStore

    store = SQLiteStore(store_file, key)
    try:
        return heads_of(store, author)
    finally:
        store.close()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def make_backup(home: Home, output: Path, progress: Progress | None = None
                ) -> dict[str, object]:
    """Write a backup of ``home`` to ``output`` (created 0600; refused if it exists);
    returns its manifest. Works while a daemon holds the home: the store is read with
    SQLite's online backup API. No private key is written (module docstring)."""
    if not home.store_path.exists():
        raise UsageError(Msg("%(path)s has no store to back up (no %(file)s)",
                             path=home.path, file=STORE_FILE))
    key = home.load_key()
    data_key = atrest.store_key(home.path)
    with tempfile.TemporaryDirectory(prefix="meshsync-backup-") as tmp:
        copy = Path(tmp) / STORE_FILE
        copy_store(home.store_path, copy, progress, data_key)
        heads = store_heads(copy, key.public_key, data_key)
        files = [name for name in PLAIN_FILES if (home.path / name).is_file()]
        manifest: dict[str, object] = {
            "format": FORMAT, "made_at": int(time.time()), "home": str(home.path),
            "device_id": key.device_id, "heads": heads,
            "after_seq": max(heads.values(), default=0),
            "files": [STORE_FILE, *files], "private_keys": False,
        }
        _write_archive(output, home, copy, files, manifest)
    return {**manifest, "file": str(output), "bytes": output.stat().st_size}


def _write_archive(output: Path, home: Home, copy: Path, files: list[str],
                   manifest: dict[str, object]) -> None:
    """The tar file: manifest first, then the store copy and the plain files."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            _add_bytes(tar, STORE_FILE, copy.read_bytes())
            for name in files:
                _add_bytes(tar, name, (home.path / name).read_bytes())
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        output.unlink(missing_ok=True)
        raise


def read_backup(path: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    """``(manifest, files by name)`` of the backup file ``path``; UsageError naming it
    if it is not a meshsync backup, or holds a file a home must not get from one."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            data = {name: _member(tar, m) for name, m in members.items()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(Msg("%(path)s is not a meshsync backup: %(reason)s", path=path,
                             reason=exc)) from None
    try:
        manifest = json.loads(data.pop(MANIFEST))
    except (KeyError, ValueError):
        raise UsageError(Msg("%(path)s is not a meshsync backup (no %(file)s)", path=path,
                             file=MANIFEST)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(Msg("%(path)s is not a meshsync backup of a known format",
                             path=path))
    unknown = sorted(set(data) - {STORE_FILE, *PLAIN_FILES})
    if unknown or STORE_FILE not in data:
        raise UsageError(Msg("%(path)s holds files a backup may not hold (%(names)s) or "
                             "no store", path=path, names=", ".join(unknown)))
    return manifest, data


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return b"" if handle is None else handle.read()


def check_new_home(path: Path) -> None:
    """UsageError unless ``path`` is missing or an empty folder no process holds: a
    restore never writes over a home (it would mix two devices' stores and keys)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(Msg("%(path)s exists and is not a folder: restore into a new "
                             "home", path=path))
    if (path / "daemon.lock").exists():
        lock = try_lock(path, "cli")
        if lock is None:
            raise HomeBusyError(path, read_holder(path),
                                Msg("a restore needs a new, unused home"))
        lock.release()
    if (path / "device.key").exists():
        raise UsageError(Msg("%(path)s is already a node home (device.key exists): "
                             "restore into a new home", path=path))
    if any(p.name != "daemon.lock" for p in path.iterdir()):
        raise UsageError(Msg("%(path)s is not empty: restore into a new, empty folder",
                             path=path))


def restore_backup(source: Path, path: Path) -> dict[str, object]:
    """Make a new home at ``path`` from the backup file ``source``: its store and files,
    a new device key (``device.key``, 0600) and its request (``device.csr``); the old
    certificate is kept as ``restored-from.crt``, not as ``device.crt``, so the home is
    not enrolled until the authority rotates the old device to the new key. The home
    is made in a sibling folder and renamed into place: a failed restore leaves none.
    Returns what to print: old and new device ids, the old key's heads in the backup."""
    manifest, data = read_backup(source)
    check_new_home(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.restoring-", dir=path.parent))
    try:
        key, had_cert = _fill_home(staging, data)
        if path.exists():  # an empty folder (check_new_home), perhaps with a lock file
            (path / "daemon.lock").unlink(missing_ok=True)
            path.rmdir()
        staging.replace(path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = str(manifest.get("device_id", ""))
    return {"home": str(path), "old_device_id": old, "new_device_id": key.device_id,
            "heads": manifest.get("heads", {}), "after_seq": manifest.get("after_seq", 0),
            "csr": str(path / CSR_FILE),
            "old_cert": str(path / OLD_CERT_FILE) if had_cert else None,
            "made_at": manifest.get("made_at"), "enrolled": False}


def _fill_home(folder: Path, data: dict[str, bytes]) -> tuple[DeviceKey, bool]:
    """Write the backup's files into ``folder`` (0600 each), the old certificate as
    :data:`OLD_CERT_FILE`, a new device key and its request; ``(key, had a cert)``."""
    files = dict(data)
    old_cert = files.pop(CERT_FILE, None)
    for name, blob in files.items():
        write_private(folder / name, blob)
    key = DeviceKey.generate()
    write_private(folder / "device.key", key.to_pem())
    write_private(folder / CSR_FILE, make_csr(key, _device_name(old_cert) or "restored device"))
    if old_cert is not None:
        write_private(folder / OLD_CERT_FILE, old_cert)
    fsync_dir(folder)
    return key, old_cert is not None


def _device_name(cert: bytes | None) -> str | None:
    """The name in the old device certificate, for the new request."""
    if cert is None:
        return None
    try:
        return parse_blob(cert)[0].name
    except AuthorizationError:  # not a certificate this build reads: the default name
        return None

