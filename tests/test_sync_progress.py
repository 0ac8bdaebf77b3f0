"""Progress of a first sync (issue 15, item 5): the daemon's ``sync.progress`` events and
``progress`` in ``/api/status``, and ``meshsync sync``'s bar on a terminal.

Real processes on 127.0.0.1 (the district of ``test_daemon.py``): a phone holding
:data:`CHANGES` changes the laptop has never seen. The laptop's event stream shows the
session moving, in order and within a second, received counts growing against what
the phone offered, then ``sync.finished`` with all of it. ``meshsync sync`` run in a
pseudo-terminal draws its bar (in Indonesian); with ``--json`` or a pipe it prints
only its result.
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import threading
import time
from typing import Any

import test_daemon
from meshsync.cli.progress import bar, progress_line
from netfixtures import MESHSYNC, Relay, wait_until, write_many_changes
from test_api_events import EventReader
from test_daemon import Lab

from meshsync.host.i18n import number

template, lab = test_daemon.template, test_daemon.lab

#: Changes the phone holds (about 100 bytes each on the wire).
CHANGES = 5_000
#: Bytes a second the slow link carries towards the laptop: the session lasts about two
#: seconds however fast the machine, several progress intervals (0.5 s).
SLOW_LINK = 250_000


class SlowRelay(Relay):
    """A relay (``netfixtures.Relay``) whose server-to-client direction carries at most
    :data:`SLOW_LINK` bytes a second, like a weak Wi-Fi link."""

    def _pump(self, src: socket.socket, dst: socket.socket, counts: dict[str, int],
              key: str) -> None:
        if key == "to_server":
            super()._pump(src, dst, counts, key)
            return
        try:
            while data := src.recv(16384):
                dst.sendall(data)
                counts[key] += len(data)
                time.sleep(len(data) / SLOW_LINK)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._end(sock)


def test_a_first_sync_shows_its_progress_as_events_and_in_status(lab: Lab) -> None:
    write_many_changes(lab.home("phone-a"), CHANGES)
    phone = lab.daemon("phone-a").start()
    link = SlowRelay(phone.listen_port)
    lab.closers.append(link.close)
    laptop = lab.daemon("laptop", [link.address]).start()  # dials the phone at once
    reader = EventReader(laptop.runtime["api"], laptop.token)
    seen_in_status: list[dict[str, Any]] = []
    stop = threading.Event()

    def poll_status() -> None:
        while not stop.is_set():
            seen_in_status.extend(laptop.get("/api/status")["progress"])
            time.sleep(0.05)

    poller = threading.Thread(target=poll_status, daemon=True)
    poller.start()
    try:
        events = reader.until("sync.finished", timeout=120)
    finally:
        stop.set()
        reader.close()
        poller.join(5)
    progress = [e for _, e in events if e["type"] == "sync.progress"]
    finished = events[-1][1]
    assert finished["changes_received"] == CHANGES and finished["error"] is None, finished
    assert len(progress) >= 2, [e["type"] for _, e in events]
    offered = [p["changes_offered"] for p in progress if p["changes_offered"] is not None]
    assert offered and set(offered) == {CHANGES}, progress
    received = [p["changes_received"] for p in progress]
    assert received == sorted(received), received
    assert any(0 < n < CHANGES for n in received), received  # seen mid-way
    assert all(p["peer"] == phone.device_id and p["direction"] == "outgoing"
               for p in progress), progress
    seqs = [e["seq"] for _, e in events]
    assert seqs == sorted(seqs)
    for arrived, event in events:
        assert arrived * 1000 - event["at_ms"] < 1000, event  # within a second
    bytes_seen = [p["bytes_received"] for p in progress]
    assert bytes_seen == sorted(bytes_seen) and bytes_seen[-1] > 0
    # /api/status said the same while the session ran, and nothing once it ended.
    assert any(s["changes_offered"] == CHANGES for s in seen_in_status), seen_in_status[-3:]
    assert laptop.get("/api/status")["progress"] == []


def _run_in_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run ``meshsync ARGS`` with stdout and stderr on a pseudo-terminal: its output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*MESHSYNC, *args], stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(leader)
        proc.wait(30)
    return b"".join(chunks).decode("utf-8", "replace")


def test_meshsync_sync_draws_a_bar_on_a_terminal_only(lab: Lab) -> None:
    write_many_changes(lab.home("phone-a"), CHANGES)
    phone = lab.daemon("phone-a").start()
    env = {**os.environ, "MESHSYNC_LANG": "id"}
    for home in ("laptop", "phone-c"):  # the daemons' mesh, for `meshsync sync`
        config = lab.home(home) / "config.toml"
        config.write_text(config.read_text() + 'mesh = "uji"\n')
    link = SlowRelay(phone.listen_port)  # lasts long enough to draw, however fast the machine
    lab.closers.append(link.close)
    shown = _run_in_pty(["sync", "--home", str(lab.home("laptop")), link.address], env)
    total = number(CHANGES, "id")
    assert f"dari {total} perubahan" in shown and "[" in shown and "#" in shown, shown[-2000:]
    assert "\r" in shown  # redrawn in place
    last = shown.rstrip().splitlines()[-1]
    assert last.startswith("terkirim 0 perubahan, diterima 5000 ") and "[" not in last, last
    wait_until(lambda: phone.status()["changes"] >= CHANGES, 10, "the phone's counts")

    # Piped, with --json: only the result.
    piped = subprocess.run([*MESHSYNC, "sync", "--json", "--home", str(lab.home("phone-c")),
                            phone.address], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
    assert "\r" not in piped.stdout and "[#" not in piped.stdout, piped.stdout[-500:]
    assert json.loads(piped.stdout)["changes_received"] >= 1


def test_the_bar_and_its_line() -> None:
    assert bar(0, None, 4) == "[----]" and bar(5, 10, 4) == "[##--]"
    assert bar(0, 0, 4) == "[####]" and bar(20, 10, 4) == "[####]"
    line = progress_line({"changes_offered": 16417, "changes_received": 8000,
                          "changes_sent": 0, "changes_to_send": 2,
                          "bytes_received": 2_500_000, "bytes_sent": 1000})
    assert "8,000" in line or "8.000" in line
