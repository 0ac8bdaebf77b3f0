"""Issue 13 item 2: a wrong phone date never stops an officer (docs/architecture.md §6).

The phone's ``meshsync`` processes run under libfaketime (Debian's ``faketime``,
preloaded into the process itself so a stop signal reaches it) at
1970-01-01 (what many phones show after a battery swap) or 2031-01-01, while the
authority and the district laptop run at the right time. Every command is the real
CLI in its own process; the network is 127.0.0.1 only. The phone saves edits, syncs
with the laptop both ways (``serve`` on one, ``sync`` on the other), is told about its
date, and both converge. A certificate whose validity really ended is still refused.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.netfixtures import LOOPBACK, MESHSYNC, Servers, wait_until

pytestmark = pytest.mark.skipif(
    not list(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")),
    reason="needs libfaketime (Debian package faketime)")


DISTRICT = "mimika/jila"
TPS = f"{DISTRICT}/diloa/tps-003"
WRONG_DATES = ["1970-01-01 00:00:00", "2031-01-01 00:00:00"]


LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


def faked_env(at: str | None) -> dict[str, str]:
    """The environment of a ``meshsync`` process whose clock starts at ``at`` and ticks
    from there (libfaketime preloaded, as the ``faketime`` command does; the monotonic
    clock stays real). ``at`` None: the real clock."""
    env = dict(os.environ)
    if at is not None:
        assert LIBFAKETIME is not None
        env.update(LD_PRELOAD=str(LIBFAKETIME), FAKETIME=f"@{at}",
                   FAKETIME_DONT_FAKE_MONOTONIC="1")
    return env


def run(*args: object, at: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``meshsync ARGS`` at the date ``at`` (default: now); with ``ok``, it must exit 0."""
    proc = subprocess.run([*MESHSYNC, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False, env=faked_env(at))
    if ok and proc.returncode != 0:
        raise AssertionError(f"meshsync {args} at {at} exited {proc.returncode}:\n"
                             f"{proc.stderr}{proc.stdout}")
    return proc


def run_json(*args: object, at: str | None = None) -> Any:
    return json.loads(run(*args, "--json", at=at).stdout)


def make_district(root: Path, *, at: str | None = None, phone_days: int = 365) -> dict[str, Path]:
    """KPU (root), PPK (sub-authority, also the gateway laptop) and PHONE (pantarlih),
    all certified at ``at`` (default: now) with the real CLI."""
    kpu, ppk, phone = root / "KPU", root / "PPK", root / "PHONE"
    run("authority", "init", "--home", kpu, "--name", "KPU Mimika", at=at)
    run("init", "--home", ppk, "--partition", DISTRICT, at=at)
    run("authority", "request", "--home", ppk, "--name", "PPK Jila", at=at)
    run("authority", "delegate", "--home", kpu, ppk / "authority.csr", "--scope", DISTRICT,
        "-o", root / "jila.crt", at=at)
    run("authority", "install", "--home", ppk, root / "jila.crt", at=at)
    run("authority", "issue", "--home", ppk, ppk / "device.csr", "--role", "gateway",
        "--scope", DISTRICT, "-o", root / "laptop.crt", at=at)
    run("enroll", "--home", ppk, root / "laptop.crt", at=at)
    run("init", "--home", phone, "--partition", TPS, at=at)
    run("authority", "issue", "--home", ppk, phone / "device.csr", "--role", "pantarlih",
        "--scope", TPS, "--days", phone_days, "-o", root / "phone.crt", at=at)
    return {"kpu": kpu, "ppk": ppk, "phone": phone, "phone_cert": root / "phone.crt"}


class FakedServer:
    """``meshsync serve --listen 127.0.0.1:0`` under faketime (see ``ServerProcess``)."""

    def __init__(self, home: Path, log: Path, at: str) -> None:
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*MESHSYNC, "serve", "--home", str(home), "--listen", f"{LOOPBACK}:0", "-v"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                env=faked_env(at))
        self.address = wait_until(self._bound, 30, "faked serve to listen")

    def _bound(self) -> str | None:
        assert self.proc.poll() is None, self.log_path.read_text()
        for line in self.log_path.read_text().splitlines():
            if line.startswith("serving ") and " on " in line:
                return line.rsplit(" on ", 1)[1].strip()
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def keys(home: Path, at: str | None = None) -> list[str]:
    return sorted(r["key"] for r in run_json("ls", "--home", home, "voters", at=at))


@pytest.mark.parametrize("wrong", WRONG_DATES)
def test_a_phone_with_a_wrong_date_keeps_working(tmp_path: Path, wrong: str) -> None:
    d = make_district(tmp_path)
    phone, ppk = d["phone"], d["ppk"]
    run("enroll", "--home", phone, d["phone_cert"], at=wrong)

    # the officer saves edits
    run("put", "--home", phone, "voters", "v-1", "nama=Yosina", at=wrong)
    run("put", "--home", phone, "voters", "v-2", "nama=Markus", at=wrong)

    # and is told, in words, on status text and --json
    text = run("status", "--home", phone, at=wrong).stdout
    assert f"This phone's date is {wrong[:10]}" in text, text
    assert "Fix the date in the phone's settings" in text
    clock = run_json("status", "--home", phone, at=wrong)["clock"]
    assert clock["plausible"] is False
    assert clock["device_date"].startswith(wrong[:10])
    assert clock["network_date"][:4] == str(datetime.now(UTC).year)

    # the laptop (right date) serves; the phone syncs
    run("put", "--home", ppk, "voters", "v-10", "nama=Laptop", f"--partition={TPS}")
    servers = Servers(tmp_path)
    try:
        server = servers.start(ppk)
        proc = run("sync", "--home", phone, server.address, "--json", at=wrong, ok=False)
    finally:
        servers.stop_all()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["converged"] is True
    assert "Fix the date in the phone's settings" in proc.stderr

    # the laptop's receipt counts, and its signing time is now the network's date
    status = run_json("status", "--home", phone, at=wrong)
    assert [f["gateway"] for f in status["custody"]["feeds"]] == [2]
    network = datetime.fromisoformat(status["clock"]["network_date"].replace("Z", "+00:00"))
    assert abs(network - datetime.now(UTC)) < timedelta(minutes=10)

    # the other way round: the phone serves under its wrong date, the laptop syncs
    run("put", "--home", phone, "voters", "v-3", "nama=Ruth", at=wrong)
    server2 = FakedServer(phone, tmp_path / "phone-serve.log", wrong)
    try:
        back = run("sync", "--home", ppk, server2.address, "--json", ok=False)
    finally:
        server2.stop()
    assert back.returncode == 0, back.stderr + server2.log_path.read_text()
    assert json.loads(back.stdout)["converged"] is True

    assert keys(phone, at=wrong) == keys(ppk) == ["v-1", "v-10", "v-2", "v-3"]


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("phone_at", [None, "1970-01-01 00:00:00"])
def test_a_certificate_that_really_expired_is_still_refused(tmp_path: Path,
                                                            phone_at: str | None) -> None:
    d = make_district(tmp_path, at=_days_ago(10), phone_days=1)  # ended 9 days ago
    phone, ppk = d["phone"], d["ppk"]
    run("enroll", "--home", phone, d["phone_cert"], at=phone_at)
    servers = Servers(tmp_path)
    try:
        server = servers.start(ppk)
        proc = run("sync", "--home", phone, server.address, at=phone_at, ok=False)
    finally:
        servers.stop_all()
    assert proc.returncode != 0
    assert "expired" in proc.stderr, proc.stderr

    # once the phone holds a newer signed time (the laptop's bundle), its own edits are
    # refused too, and with a wrong date the refusal says so
    laptop = tmp_path / "LAPTOP2"  # a laptop certified today
    run("init", "--home", laptop, "--partition", DISTRICT)
    run("authority", "issue", "--home", ppk, laptop / "device.csr", "--role", "gateway",
        "--scope", DISTRICT, "-o", tmp_path / "laptop2.crt")
    run("enroll", "--home", laptop, tmp_path / "laptop2.crt")
    bundle = tmp_path / "laptop.bundle"
    run("bundle", "export", "--clear", "--home", laptop, "-o", bundle)
    run("bundle", "import", "--home", phone, bundle, at=phone_at)
    refused = run("put", "--home", phone, "voters", "v-1", "nama=Yosina", at=phone_at, ok=False)
    assert "expired" in refused.stderr, refused.stderr
    if phone_at is not None:
        assert "Fix the date in the phone's settings" in refused.stderr


def test_the_daemon_tells_the_officer_on_api_status_and_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.daemonfixtures import DaemonProcess

    d = make_district(tmp_path)
    wrong = WRONG_DATES[0]
    run("enroll", "--home", d["phone"], d["phone_cert"], at=wrong)
    daemon = DaemonProcess(d["phone"], tmp_path / "daemon.log", {})
    with monkeypatch.context() as env:  # the daemon (only) starts at the wrong date
        for name, value in faked_env(wrong).items():
            env.setenv(name, value)
        daemon.start()
    try:
        put = daemon.request("PUT", "/api/records/voters/v-1",
                             {"fields": {"nama": "Yosina"}, "partition": TPS})
        assert put.status == 200, put.body
        status = daemon.request("GET", "/api/status").body
        assert status["clock"]["plausible"] is False
        assert "This phone's date is 1970-01-01" in status["clock"]["message"]
        page = daemon.request("GET", "/").body
        assert "Fix the date in the phone&#x27;s settings" in page or \
            "Fix the date in the phone's settings" in page
    finally:
        daemon.stop()
    text = run("status", "--home", d["phone"], at=wrong).stdout
    assert "Fix the date in the phone's settings" in text
