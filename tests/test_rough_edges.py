"""Rough edges a new user hit on a shared Wi-Fi district , each held by
a test that fails without its fix: one clear line, every cause named."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers import records_stored
from meshsync.coklit.schema import REQUIRED
from netfixtures import LOOPBACK, District, run


def test_a_refused_new_voter_lists_every_missing_field(tmp_path: Path) -> None:
    """The error names all 13 missing fields; it was cut after ~300 characters."""
    home = tmp_path / "phone"
    run("init", "--home", home, "--partition", "mimika/jila/diloa/tps-003")
    with (home / "config.toml").open("a") as f:
        f.write('schema = "coklit"\n')
    proc = run("put", "--home", home, "voters", "v-1", "nama=Yosina Contoh", check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith("meshsync: error: ") and "\n" not in line, proc.stderr
    assert "more characters" not in line
    missing = [name for name in REQUIRED if name != "nama"]
    assert all(f"{name}: is required" in line for name in missing), line


def test_ctrl_c_during_sync_prints_one_line_with_what_was_stored(tmp_path: Path) -> None:
    """Ctrl-C mid-sync: one line saying how many changes were kept, exit 130 (it was a
    69-line traceback)."""
    home = District(tmp_path).enrol("phone-a")
    with closing(socket.create_server((LOOPBACK, 0))) as silent:  # accepts, never answers
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshsync.cli.main", "sync", "--home", str(home),
             f"{LOOPBACK}:{silent.getsockname()[1]}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn, _ = silent.accept()  # the sync is now waiting for its TLS handshake
        with closing(conn):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    assert "sync interrupted (Ctrl-C); 0 changes received and stored" in stderr, stderr


def test_a_misspelled_config_key_is_refused_by_put_get_and_ls(tmp_path: Path) -> None:
    """``partiton = ...`` was ignored: edits went to partition ``local``. Every command
    now refuses it in one line naming the key and the file."""
    home = tmp_path / "phone"
    run("init", "--home", home)
    with (home / "config.toml").open("a") as f:
        f.write('partiton = "mimika/jila/diloa/tps-003"\n')
    for args in (["put", "voters", "v-1", "nama=Yosina"], ["get", "voters", "v-1"],
                 ["ls", "voters"]):
        proc = run(args[0], "--home", home, *args[1:], check=False)
        line = proc.stderr.strip()
        assert proc.returncode == 1 and "\n" not in line, (args, proc.returncode, proc.stderr)
        assert "unknown key 'partiton'" in line and str(home / "config.toml") in line, line


def test_the_daemon_says_one_start_line_without_verbose(tmp_path: Path) -> None:
    """Without ``-v`` the daemon printed nothing at start: now one line with its device
    id, the sync address it listens on and its API URL."""
    import json
    import threading

    from meshsync.host.home import Home

    home = District(tmp_path).enrol("phone-a")
    config = Home.open(home)
    config.write_config({**config.config(), "listen": f"{LOOPBACK}:0",
                         "api": f"{LOOPBACK}:0", "discovery": ["static"]})
    device = Home.open(home).load_key().device_id
    proc = subprocess.Popen([sys.executable, "-m", "meshsync.cli.main", "daemon", "--home",
                             str(home)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(30, proc.kill)  # a daemon that never says it started
    timer.start()
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        runtime = json.loads((home / "daemon.json").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        timer.cancel()
    assert device in line and "Traceback" not in rest, (line, rest)
    assert f"{LOOPBACK}:{runtime['listen'].rsplit(':', 1)[1]}" in line, (line, runtime)
    assert f"http://{runtime['api']}/" in line, (line, runtime)


def test_coklit_find_takes_a_nik_or_an_nkk(tmp_path: Path) -> None:
    """``coklit find 9404…`` found nothing: it only searched names."""
    import csv
    import json

    csv_path = tmp_path / "dpt.csv"
    run("coklit", "generate", "--seed", "3", "--distrik", "Agimuga", "--voters-per-tps", "5",
        "--tps-per-kampung", "1", "-o", csv_path)
    with csv_path.open(encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    home = tmp_path / "central"
    run("init", "--home", home)
    run("coklit", "import", csv_path, "--home", home)
    for query in (row["NIK"], row["NKK"], f"{row['NIK'][:4]} {row['NIK'][4:]}"):
        proc = run("coklit", "find", query, "--home", home, "--json")
        found = json.loads(proc.stdout)
        assert row["ID"] in {r["key"] for r in found}, query
        assert all(query.replace(" ", "") in (r["fields"]["nik"], r["fields"]["nkk"])
                   for r in found), query


def interrupted_import(home: Path, csv_path: Path, after: int, lang: str = "en") -> str:
    """``meshsync coklit import`` of ``csv_path`` into ``home`` (100 rows a change),
    sent SIGINT once ``after`` records are stored; asserts exit 130, returns stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshsync.cli.main", "--lang", lang, "coklit", "import",
         str(csv_path), "--home", str(home), "--batch-size", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while records_stored(home) < after and time.monotonic() < deadline and \
            proc.poll() is None:
        time.sleep(0.02)  # until some batches are stored
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr)
    return stderr


def test_ctrl_c_during_coklit_import_says_what_was_stored(tmp_path: Path) -> None:
    """Ctrl-C mid-import said only ``aborted`` and left part of the list stored. Now one
    line says how many voters were stored (whole batches) and that running the same
    import again stores the rest; exit 130. Running it again completes the list."""
    csv_path = tmp_path / "dpt.csv"
    run("coklit", "generate", "--seed", "1", "--distrik", "Jila", "-o", csv_path)
    home = tmp_path / "central"
    run("init", "--home", home)
    stderr = interrupted_import(home, csv_path, after=1000)
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    assert "interrupted (Ctrl-C)" in stderr and "run the same import again" in stderr, stderr
    import json

    stored = int(stderr.split("Ctrl-C): ", 1)[1].split(" of ", 1)[0])
    total = int(stderr.split(" of ", 1)[1].split(" voters", 1)[0])
    assert 0 < stored < total == 16417, stderr
    held = run("ls", "voters", "--home", home, "--json").stdout
    assert held.count('"key"') == stored
    again = run("coklit", "import", csv_path, "--home", home, "--json").stdout
    report = json.loads(again)
    assert (report["new"], report["unchanged"]) == (total - stored, stored), report


def test_names_are_stored_in_one_spelling_by_put_and_import(tmp_path: Path) -> None:
    """An NFD name or one with doubled spaces was stored as typed, so one name showed
    in two spellings. Local puts and ``coklit import`` now store NFC, single spaces."""
    import csv
    import json
    import unicodedata

    nfd = unicodedata.normalize("NFD", "  Débora   Contoh ")
    csv_path = tmp_path / "dpt.csv"
    run("coklit", "generate", "--seed", "5", "--distrik", "Agimuga", "--voters-per-tps", "3",
        "--tps-per-kampung", "1", "-o", csv_path)
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["NAMA"], rows[0]["ALAMAT"] = nfd, "Kampung\u00a0\u00a0Kiliarma"
    with csv_path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    home = tmp_path / "central"
    run("init", "--home", home)
    run("coklit", "import", csv_path, "--home", home)
    got = json.loads(run("get", "--home", home, "voters", rows[0]["ID"], "--json").stdout)
    assert got["fields"]["nama"] == "D\u00e9bora Contoh", got["fields"]["nama"]
    assert got["fields"]["alamat"] == "Kampung Kiliarma", got["fields"]["alamat"]
    assert got["fields"]["dpt"]["nama"] == "D\u00e9bora Contoh", got["fields"]["dpt"]
    run("put", "--home", home, "--partition", got["partition"], "voters", rows[0]["ID"],
        f"nama={nfd}", f"tempat_lahir={unicodedata.normalize('NFD', 'Timika  Jaya')}")
    got = json.loads(run("get", "--home", home, "voters", rows[0]["ID"], "--json").stdout)
    assert (got["fields"]["nama"], got["fields"]["tempat_lahir"]) == \
        ("D\u00e9bora Contoh", "Timika Jaya"), got["fields"]


@pytest.mark.slow
def test_concurrent_syncs_into_one_server_all_converge(tmp_path: Path) -> None:
    """Concurrent syncs into one ``meshsync serve`` all exited 4 ("not converged") only
    because the server's state moved meanwhile (the other sessions). A session that
    got everything either side offered at its start, refusing nothing, is converged."""
    import json

    from netfixtures import ServerProcess, write_many_changes

    district = District(tmp_path)
    gateway = district.enrol("gateway", role="gateway")
    phones = [district.enrol(f"phone-{i}") for i in range(8)]
    for phone in phones:
        write_many_changes(phone, 300)
    server = ServerProcess(gateway, tmp_path / "serve.log")
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "meshsync.cli.main", "sync", "--home",
                                   str(phone), server.address, "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for phone in phones]
        results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    finally:
        server.stop()
    for (out, err), rc in results:
        assert rc == 0 and json.loads(out)["converged"] is True, (rc, out, err)


def test_post_sync_reaches_a_peer_that_only_connected_inbound() -> None:
    """A gateway's ``POST /api/sync`` answered ok and synced nothing with a phone that had
    connected to it: the phone had no address to dial. It is now dialled where it
    connected from, at the mesh's listen port; a peer still out of reach is named."""
    import os
    from types import SimpleNamespace

    from meshsync.daemon.peers import PeerManager

    from meshsync.model.identity import device_id
    from meshsync.protocol.events import SessionSummary

    endpoint = SimpleNamespace(node=SimpleNamespace(key=SimpleNamespace(
        device_id=device_id(os.urandom(32)))), registry=None)
    clock = [1_000_000]
    manager = PeerManager(endpoint, "m", anti_entropy_s=3600,  # type: ignore[arg-type]
                          backoff_min_s=2, backoff_max_s=300, clock=lambda: clock[0])
    phone = os.urandom(32)
    manager.session_finished("incoming", ("10.77.0.5", 51234),
                             SessionSummary(peer=phone, converged=True))
    peer = manager.peers[device_id(phone)]
    assert peer.addresses == {("10.77.0.5", 7420): "inbound"}
    assert manager.sync_all() == []
    assert manager._wanted(peer, clock[0]) and manager._address_for(peer, clock[0])
    peer.failures, peer.last_error = 2, "connection refused"
    [unreachable] = manager.sync_all()
    assert unreachable["device_id"] == device_id(phone)
    assert "connection refused" in unreachable["reason"]
    peer.addresses.clear()
    assert "no address where it listens" in manager.sync_all()[0]["reason"]


def test_every_key_the_daemon_reads_is_a_known_config_key() -> None:
    """The host layer's list of config keys holds every key the daemon reads, so no
    command refuses a key the daemon documents."""
    from meshsync.daemon import config

    from meshsync.host.home import CONFIG_KEYS

    daemon_keys = set(config.DEFAULTS) | config.HOME_KEYS | {"share"}  # share: no default
    assert daemon_keys == set(CONFIG_KEYS)


def test_ctrl_c_during_coklit_import_through_a_daemon_says_the_daemon_goes_on(
        tmp_path: Path) -> None:
    """With a daemon on the home the file goes through it: a Ctrl-C only stops the
    waiting, the daemon imports the whole file. The line said "nothing half-stored"
    while the daemon stored every voter; it now says the daemon goes on (exit 130)."""
    from daemonfixtures import DaemonProcess

    csv_path = tmp_path / "dpt.csv"
    run("coklit", "generate", "--seed", "1", "--distrik", "Jila", "-o", csv_path)
    home = District(tmp_path).enrol("central", role="central", scope="", partition="mimika")
    daemon = DaemonProcess(home, tmp_path / "daemon.log", {}).start()
    try:
        stderr = interrupted_import(home, csv_path, after=100, lang="id")
        assert "Traceback" not in stderr and "tetap mengimpor seluruh berkas" in stderr, \
            stderr
        deadline = time.monotonic() + 120
        while records_stored(home) < 16417 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert records_stored(home) == 16417  # the whole file, as the line says
    finally:
        daemon.stop()
