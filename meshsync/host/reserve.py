"""The disk reserve: free space on a home's disk kept for the officer's own edits.

Received data (a sync batch, a bundle) that would bring free space below
``storage_reserve_mb`` of ``config.toml`` is refused whole; local edits never are
(docs/failure-cases.md B17, docs/architecture.md §9). Kept apart from
:mod:`meshsync.host.local` so that the read-only open (:mod:`meshsync.host.reading`)
checks the setting without importing the rest of the node.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from meshsync.host.home import Home
from meshsync.model.errors import StorageLowError, UsageError

if TYPE_CHECKING:
    from meshsync.replica.node import Node

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
        free = _free_bytes(self.path)
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
    free = _free_bytes(guard.path)
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


def _free_bytes(path: Path) -> int:
    """Bytes free for this user on ``path``'s disk."""
    import shutil  # imports compression modules: only when a reserve is checked

    return shutil.disk_usage(path).free
