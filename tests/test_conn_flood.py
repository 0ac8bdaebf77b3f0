"""Issue 14, item 2: a flood of idle connections to a real ``meshsync serve``.

Thousands of TCP connections from 127.0.0.1 that never send a byte are held open
while an honest phone syncs. The server must keep its open files within its cap on
unauthenticated connections (plus a margin), the honest sync must take about its
normal time, the server's memory must come back near its baseline once the flood
ends, and its log must hold a bounded number of refusal lines, with counts.
"""

from __future__ import annotations

import re
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
from netfixtures import (
    DISTRICT,
    LOOPBACK,
    VILLAGE,
    District,
    ServerProcess,
    Servers,
    run,
    sync,
    wait_until,
)

from meshsync.net.admission import DEFAULT_MAX_PER_SOURCE

pytestmark = pytest.mark.slow

FLOOD = 3000
#: Seconds per refusal-log window in this test (the default is a minute).
LOG_INTERVAL_S = 2
#: Open files the server may hold beyond its baseline: the per-source cap (every
#: connection here comes from 127.0.0.1), the honest session, and slack for the
#: accept loop being one connection ahead of the shedding.
FD_MARGIN = DEFAULT_MAX_PER_SOURCE + 16
#: RSS the server may keep after the flood, MB.
RSS_MARGIN_MB = 15.0


def open_files(pid: int) -> int:
    """How many file descriptors process ``pid`` holds (``/proc/PID/fd``)."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def room_for_flood() -> Iterator[None]:
    """Let this process hold the flood's sockets (raise the soft open-file limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FLOOD + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def flood(port: int, count: int, stack: ExitStack) -> None:
    """Open ``count`` idle connections to ``127.0.0.1:port``, closed with ``stack``."""
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stack.callback(sock.close)
        sock.settimeout(5)
        with suppress(OSError):  # a full backlog: that one attempt is lost, as in a flood
            sock.connect((LOOPBACK, port))


def refusals_logged(server: ServerProcess) -> int:
    """Refused connections in the server's log: one per line, or a line's count."""
    total = 0
    for line in server.log().splitlines():
        if "refused" in line:
            counted = re.search(r"and ([\d,]+) more", line)
            total += int(counted.group(1).replace(",", "")) if counted else 1
    return total


def timed_sync(home: Path, server: ServerProcess) -> float:
    """Seconds one honest ``meshsync sync`` takes (must succeed)."""
    start = time.monotonic()
    result = sync(home, server)
    assert result["converged"], result
    return time.monotonic() - start


def test_idle_flood_is_bounded_and_honest_sync_keeps_its_speed(
        tmp_path: Path, room_for_flood: None) -> None:
    district = District(tmp_path / "d")
    laptop = district.enrol("laptop", "gateway", DISTRICT)
    phone = district.enrol("phone", scope=VILLAGE, partition=f"{VILLAGE}/tps-001")
    with (laptop / "config.toml").open("a") as config:
        config.write(f"refusal_log_interval_s = {LOG_INTERVAL_S}\n")
    servers = Servers(tmp_path)
    try:
        server = servers.start(laptop)
        pid = server.proc.pid
        run("put", "--home", phone, "voters", "v0", "nama=Yohana")
        normal = min(timed_sync(phone, server) for _ in range(2))
        base_fds, base_rss = open_files(pid), rss_mb(pid)

        with ExitStack() as held:
            flood(server.port, FLOOD, held)
            peak_fds = open_files(pid)
            run("put", "--home", phone, "voters", "v1", "nama=Marthen")
            during = timed_sync(phone, server)
            peak_fds = max(peak_fds, open_files(pid))
            rss_during = rss_mb(pid)
        print(f"normal sync {normal:.2f} s, during the flood {during:.2f} s; open files "
              f"{base_fds} -> {peak_fds}; RSS {base_rss:.0f} -> {rss_during:.0f} MB")

        assert peak_fds <= base_fds + FD_MARGIN, (base_fds, peak_fds)
        assert during <= max(2 * normal, normal + 2.0), (normal, during)

        # After the flood: the summary line, then memory near where it started.
        server.wait_for_log(r"refused \.\.\. and [\d,]+ more at load in the last 2 s",
                            timeout=3 * LOG_INTERVAL_S + 15)
        wait_until(lambda: open_files(pid) <= base_fds + 2, 15, "server fds back to base")
        assert timed_sync(phone, server) <= max(2 * normal, normal + 2.0)
        rss_after = rss_mb(pid)
        print(f"RSS after the flood {rss_after:.0f} MB")
        assert rss_after <= base_rss + RSS_MARGIN_MB, (base_rss, rss_after)

        # Every flood connection was refused (shed, or timed out), and said so in a count.
        wait_until(lambda: refusals_logged(server) >= FLOOD - FD_MARGIN, 3 * LOG_INTERVAL_S,
                   "refusal counts in the log")
        lines = [line for line in server.log().splitlines() if "refused" in line]
        assert len(lines) <= 40, "\n".join(lines[:50])
        assert server.stop() == 0
    finally:
        servers.stop_all()
