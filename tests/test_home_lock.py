"""The home lock (meshsync.host.lock): one holder at a time, which names itself.

The real processes (daemon, serve, CLI writes) are in ``test_one_writer.py``; here
one process opens the lock file twice, as two processes would (``flock`` locks
belong to the open file, so the second open is refused as another process is).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from meshsync.host.lock import Holder, HomeBusyError, hold_home, read_holder, try_lock


def test_a_held_home_is_refused_naming_the_holder_and_its_pid(tmp_path: Path) -> None:
    with hold_home(tmp_path, "daemon"):
        assert read_holder(tmp_path) == Holder("daemon", os.getpid())
        assert try_lock(tmp_path, "cli") is None
        with pytest.raises(HomeBusyError) as refused, hold_home(tmp_path, "serve"):
            pass
        message = str(refused.value)
        assert str(tmp_path) in message and f"meshsync daemon (pid {os.getpid()})" in message
        assert "\n" not in message
    again = try_lock(tmp_path, "cli")
    assert again is not None
    assert read_holder(tmp_path) == Holder("cli", os.getpid())
    again.release()
    again.release()  # idempotent


def test_an_unreadable_holder_is_none_and_the_message_still_names_the_home(
        tmp_path: Path) -> None:
    assert read_holder(tmp_path) is None
    (tmp_path / "daemon.lock").write_text("cli 12\nserve 13\n")
    assert read_holder(tmp_path) is None
    assert "home" in str(HomeBusyError(tmp_path, None))
    with pytest.raises(ValueError, match="unknown lock holder kind"):
        try_lock(tmp_path, "editor")


def test_a_cli_write_is_waited_for_a_daemon_or_serve_is_not(tmp_path: Path) -> None:
    with hold_home(tmp_path, "cli"), \
            pytest.raises(HomeBusyError, match=r"a meshsync command \(pid"), \
            hold_home(tmp_path, "daemon", cli_wait_s=0.2):
        pass
    started = time.monotonic()
    with hold_home(tmp_path, "serve"), \
            pytest.raises(HomeBusyError, match="meshsync serve"), \
            hold_home(tmp_path, "daemon", cli_wait_s=60):
        pass
    assert time.monotonic() - started < 5  # refused at once, not after the wait
