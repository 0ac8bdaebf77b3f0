"""Writing files that must not leak or tear: private keys and replaced files.

One place for the home (device keys, certificates), the authority commands
(authority keys, issued certificates) and the daemon (its API token); and the home
folder's own mode (:func:`make_home_private`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly readable by others),
    write ``data`` and fsync it.

    Raises :class:`FileExistsError` if ``path`` exists (a key is never overwritten) and
    :class:`OSError` if it cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``: write a sibling ``<name>.tmp``, fsync
    it, rename it over ``path`` (a reader sees the old bytes or the new, never a part).

    Raises :class:`OSError` naming ``path`` itself (not the sibling) if it fails; the
    sibling is removed.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def fsync_dir(path: Path) -> None:
    """Make renames in the folder ``path`` durable (best effort where folders cannot be
    opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_home_private(path: Path) -> None:
    """Take group and other permissions off the home folder (mode 0700), as every file
    in it is the device's own: its key, its token, the voters in its store
    (docs/architecture.md §9). Homes made by an older meshsync were 0755. A folder this
    user does not own is left as it is (``OSError`` is not raised)."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            path.chmod(mode & 0o700)
    except OSError:
        return
