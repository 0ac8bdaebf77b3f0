"""meshsync.host.files: private files are 0600 from the start and never overwritten;
replaced files are whole or untouched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshsync.host.files import replace_file, write_private


def test_write_private_is_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    write_private(path, b"secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"secret"
    with pytest.raises(FileExistsError):
        write_private(path, b"other")
    assert path.read_bytes() == b"secret"


def test_replace_file_swaps_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "device.crt"
    replace_file(path, b"old")
    replace_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.crt"]


def test_replace_file_error_names_the_file_not_its_sibling(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "out.pem"
    with pytest.raises(OSError, match=r"out\.pem") as info:
        replace_file(target, b"x")
    assert ".tmp" not in str(info.value)
