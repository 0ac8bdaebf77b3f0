"""Store files hold voters' personal data: owner-only modes (docs/architecture.md §9).

The store (``store.sqlite``, its ``-wal`` and ``-shm``) is 0600 in a 0700 home, for a
new home and for a home an older meshsync made 0644 in 0755, whatever the umask.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.store.sqlite import SQLiteStore

STORE_FILES = ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm")


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, which made the store 0644
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_one_record(home: Path) -> None:
    with open_node(home) as node:
        node.put("voters", "v-1", {"nama": "Yosina"}, partition="mimika/jila/tps-001")
        assert all((home / name).exists() for name in STORE_FILES)  # WAL open: all three
        modes = {name: mode(home / name) for name in STORE_FILES}
    assert modes == dict.fromkeys(STORE_FILES, 0o600)


def test_a_new_home_and_its_store_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home.create(home, partition="mimika/jila/tps-001")
    assert mode(home) == 0o700
    write_one_record(home)
    assert mode(home) == 0o700
    assert mode(home / "store.sqlite") == 0o600


def test_an_existing_world_readable_home_is_made_private_on_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home.create(home, partition="mimika/jila/tps-001")
    write_one_record(home)
    home.chmod(0o755)  # as meshsync before this fix left them
    (home / "store.sqlite").chmod(0o644)
    write_one_record(home)
    assert mode(home) == 0o700
    assert mode(home / "store.sqlite") == 0o600


def test_a_store_opened_alone_is_created_private(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "other.sqlite")
    try:
        with store.transaction():
            store.set_meta("x", b"1")
        for suffix in ("", "-wal", "-shm"):
            assert mode(tmp_path / f"other.sqlite{suffix}") == 0o600, suffix
    finally:
        store.close()
