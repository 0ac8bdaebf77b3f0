"""One home, one writer (docs/architecture.md §9): the lock on ``HOME/daemon.lock``.

Every process that writes to a home holds this advisory ``flock`` while it writes:
``meshsync daemon`` and ``meshsync serve`` for as long as they run, a writing CLI
command (``put``, ``delete``, ``bundle import``, ...) for the one write. Each keeps
the home's hybrid logical clock in memory while it runs, so two writers at once could
stamp two changes of the same author with the same HLC, and op ids ``(hlc, author)``
would collide.

The holder writes ``KIND PID`` into the file once it holds the lock, so a process
refused the lock can name who holds it: a CLI command then sends its write to the
running daemon's local API instead (see ``meshsync.cli.writer``), a second daemon or
``serve`` stops with one line naming the home and the holder's pid.

The library's :func:`meshsync.host.local.open_node` takes no lock: a program that
embeds the node is the home's writer and must not run beside a daemon on it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshsync.model.errors import UsageError
from meshsync.model.text import Msg

LOCK_FILE = "daemon.lock"

#: What may hold a home: a daemon (it has a local API), ``meshsync serve`` (none), or
#: one CLI command writing.
KINDS = ("daemon", "serve", "cli")


@dataclass(frozen=True)
class Holder:
    """Who holds a home's lock: ``kind`` (one of :data:`KINDS`) and process id."""

    kind: str
    pid: int

    def describe(self) -> str:
        """``meshsync daemon (pid 123)``: for messages."""
        what = "a meshsync command" if self.kind == "cli" else f"meshsync {self.kind}"
        return f"{what} (pid {self.pid})"


class HomeBusyError(UsageError):
    """The home's lock is held by another process (``holder``, None if unknown); the
    message names the home and the holder, then ``hint`` (what to do)."""

    def __init__(self, path: Path, holder: Holder | None,
                 hint: str = Msg("one daemon or serve per home (stop it first)")) -> None:
        who = holder.describe() if holder else Msg("another process")
        super().__init__(Msg("home %(path)s is in use by %(who)s: %(hint)s", path=path,
                             who=who, hint=hint))
        self.path, self.holder = path, holder


class HomeLock:
    """A held lock on one home; :meth:`release` (or leaving its ``with``) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Free the lock (closing the file frees the ``flock``); idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lock(path: Path, kind: str) -> HomeLock | None:
    """Take the lock of home ``path`` for a ``kind`` (:data:`KINDS`) process without
    waiting; None if another process holds it. Raises OSError if the home's folder
    cannot be written."""
    if kind not in KINDS:
        raise ValueError(f"unknown lock holder kind {kind!r}")
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{kind} {os.getpid()}\n".encode(), 0)
    return HomeLock(path, fd)


def read_holder(path: Path) -> Holder | None:
    """Who wrote the lock file of home ``path`` last: the holder while it is held
    (None if the file is missing, empty or not ``KIND PID``)."""
    try:
        text = (path / LOCK_FILE).read_text("ascii", errors="replace")
    except OSError:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] not in KINDS or not parts[1].isdigit():
        return None
    return Holder(parts[0], int(parts[1]))


#: Seconds :func:`hold_home` waits for a CLI command's write to finish (a write holds
#: the home for a moment; a daemon or serve holds it until it stops).
CLI_WAIT_S = 30.0
_POLL_S = 0.05


@contextmanager
def hold_home(path: Path, kind: str, *, cli_wait_s: float = CLI_WAIT_S
              ) -> Iterator[HomeLock]:
    """Hold the lock of home ``path`` while the ``with`` block runs.

    A CLI command writing (or a holder not yet named) is waited for, at most
    ``cli_wait_s`` seconds. Raises :class:`HomeBusyError` (one line naming the home
    and the holder's pid) if a daemon or serve holds it, or the wait runs out.
    """
    deadline = time.monotonic() + cli_wait_s
    while (lock := try_lock(path, kind)) is None:
        holder = read_holder(path)
        if (holder is not None and holder.kind != "cli") or time.monotonic() > deadline:
            raise HomeBusyError(path, holder)
        time.sleep(_POLL_S)
    with lock:
        yield lock
