"""Encrypted homes (issue 17, docs/architecture.md §6), with the real ``meshsync``.

A district made with the real commands: a KPU authority, a Jila laptop (gateway) and a
phone of one TPS, both made with ``meshsync init --encrypt`` (each its own
passphrase, given as an operator's script would: ``MESHSYNC_PASSPHRASE``), and a clear
phone of the same TPS as the control. The laptop imports an invented voter list
(``meshsync coklit generate``) and serves over mutual TLS on 127.0.0.1 with its log
in its home; both phones sync from it. Then every byte of every file under the
encrypted homes (store, WAL, shm, log, config, keys) is searched for each voter's NIK,
KK number and name (UTF-8 of the NFC and NFD forms): none is there, while the clear
phone's home holds every one of its TPS. A wrong or missing passphrase is refused
with one clear line and changes no byte; with the right one the same homes open,
sync a new edit and converge. A backup of the encrypted phone holds no voter either and
restores into a home that opens with the same passphrase; a wipe removes the store and
the wrapped data key. A ``meshsync daemon`` on a copy of the laptop unlocks it once at
its start, serves its records and takes an edit, and its own files (``daemon.json``,
its log in the home, the live WAL) hold no voter either. An app's home encrypted with
the app's own 32-byte key starts through ``daemon/embed.py`` with that key (a wrong one
is refused) and keeps an edit made through its API encrypted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import unicodedata
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemonfixtures import DaemonProcess
from netfixtures import LOOPBACK, District, wait_until
from test_bundle import meshsync_cmd

from meshsync.host import atrest
from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.errors import StorageError, UsageError
from meshsync.store.sqlite import SQLiteStore
from meshsync.store.sqlite_connect import cipher_driver

pytest.importorskip("sqlcipher3")

LAPTOP_PASS, PHONE_PASS = "laptop jila 2029", "pin-hp-581204"
TPS = "mimika/jila/jila/tps-001"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SERVING = re.compile(r"serving \S+ on 127\.0\.0\.1:(\d+)")


def run(*args: Any, passphrase: str | None = None, ok: tuple[int, ...] = (0,),
        lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MESHSYNC_HOME", atrest.PASSPHRASE_ENV, atrest.PASSPHRASE_FILE_ENV)}
    env["MESHSYNC_LANG"] = lang
    if passphrase is not None:
        env[atrest.PASSPHRASE_ENV] = passphrase
    proc = subprocess.run([*meshsync_cmd(), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode in ok, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_json(*args: Any, passphrase: str | None = None) -> Any:
    return json.loads(run(*args, "--json", passphrase=passphrase).stdout)


class Server:
    """``meshsync serve -v`` on a home, its log a file in that home (as an operator's
    ``2>> HOME/serve.log``), the passphrase from the environment."""

    def __init__(self, home: Path, passphrase: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
        if passphrase is not None:
            env[atrest.PASSPHRASE_ENV] = passphrase
        self.log = home / "serve.log"
        self.start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*meshsync_cmd(), "serve", "--home", str(home), "--listen", f"{LOOPBACK}:0",
                 "-v"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        self.address = wait_until(self._address, 60, "meshsync serve listening")

    def _address(self) -> str | None:
        text = self.log.read_bytes()[self.start:].decode(errors="replace")
        assert self.proc.poll() is None, text
        found = SERVING.search(text)
        return f"{LOOPBACK}:{found.group(1)}" if found else None

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(30) == 0, self.log.read_text(errors="replace")


def enrol(root: Path, name: str, role: str, scope: str, passphrase: str | None) -> Path:
    home = root / name
    encrypt = ["--encrypt"] if passphrase else []
    run("init", "--home", home, "--partition", scope, *encrypt, passphrase=passphrase)
    run("authority", "issue", "--home", root / "kpu", home / "device.csr", "--role", role,
        "--scope", scope, "-o", root / f"{name}.crt")
    run("enroll", "--home", home, root / f"{name}.crt", passphrase=passphrase)
    return home


def secrets(rows: list[dict[str, str]]) -> set[bytes]:
    """Each voter's NIK, KK number and name as a file would hold them (UTF-8, NFC and
    NFD: a name with an accent has two byte forms)."""
    found: set[bytes] = set()
    for row in rows:
        for text in (row["NIK"], row["NKK"], row["NAMA"]):
            found |= {unicodedata.normalize(form, text).encode() for form in ("NFC", "NFD")}
    return found


def home_bytes(home: Path) -> dict[str, bytes]:
    """Every file under ``home``, recursively (store, -wal, -shm, logs, config...)."""
    return {str(p.relative_to(home)): p.read_bytes()
            for p in sorted(home.rglob("*")) if p.is_file()}


def leaks(home: Path, wanted: set[bytes]) -> dict[str, list[bytes]]:
    found = {name: [s for s in wanted if s in data] for name, data in home_bytes(home).items()}
    return {name: hits for name, hits in found.items() if hits}


def digest(home: Path) -> dict[str, str]:
    """Every file's SHA-256 but the lock file's (it names the last command's process)."""
    return {n: hashlib.sha256(d).hexdigest() for n, d in home_bytes(home).items()
            if n != "daemon.lock"}


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("athome")
    run("authority", "init", "--home", root / "kpu", "--name", "KPU Uji")
    laptop = enrol(root, "laptop", "gateway", "mimika/jila", LAPTOP_PASS)
    phone = enrol(root, "phone", "pantarlih", TPS, PHONE_PASS)
    clear = enrol(root, "clear", "pantarlih", TPS, None)
    run("coklit", "generate", "--seed", "1717", "--distrik", "Jila", "--voters-per-tps", "4",
        "--tps-per-kampung", "1", "-o", root / "voters.csv")
    with (root / "voters.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert run_json("coklit", "import", "--home", laptop, root / "voters.csv",
                    passphrase=LAPTOP_PASS)["imported"] == len(rows)
    server = Server(laptop, LAPTOP_PASS)
    try:
        for home, passphrase in ((phone, PHONE_PASS), (clear, None)):
            run("sync", "--home", home, server.address, passphrase=passphrase)
    finally:
        server.stop()
    held = {v["fields"]["nik"] for v in run_json("ls", "--home", clear, "voters")}
    here = [r for r in rows if r["NIK"] in held]  # what the phones hold
    assert here and {r["NIK"] for r in rows if r["KAMPUNG"] == "Jila" and r["TPS"] == "1"
                     } <= held
    return {"root": root, "laptop": laptop, "phone": phone, "clear": clear,
            "rows": rows, "here": here}


def test_an_encrypted_home_holds_no_voter_in_clear(district: dict[str, Any]) -> None:
    laptop, phone, clear = district["laptop"], district["phone"], district["clear"]
    voters = run_json("ls", "--home", phone, "voters", passphrase=PHONE_PASS)
    assert run_json("status", "--home", phone, passphrase=PHONE_PASS)["encrypted"] is True
    assert run_json("status", "--home", clear)["encrypted"] is False
    assert sorted(v["fields"]["nik"] for v in voters) == sorted(r["NIK"] for r in district["here"])
    assert "serve.log" in home_bytes(laptop) and "store.sqlite" in home_bytes(phone)
    assert leaks(laptop, secrets(district["rows"])) == {}
    assert leaks(phone, secrets(district["rows"])) == {}
    # The same search finds every voter of its TPS in the clear phone's home.
    in_clear = {s for hits in leaks(clear, secrets(district["here"])).values() for s in hits}
    assert {r["NIK"].encode() for r in district["here"]} | \
        {r["NAMA"].encode() for r in district["here"]} <= in_clear


def test_wrong_or_missing_passphrase_is_refused_and_changes_nothing(
        district: dict[str, Any]) -> None:
    phone = district["phone"]
    before = digest(phone)
    wrong = run("ls", "--home", phone, "voters", passphrase="tebakan-salah", ok=(1,))
    assert wrong.stderr == (f"meshsync: error: wrong passphrase for {phone}: nothing was "
                            "opened or changed\n")
    in_id = run("get", "--home", phone, "voters", "x", passphrase="tebakan-salah", ok=(1,),
                lang="id")
    assert in_id.stderr.startswith("meshsync: gagal: kata sandi") and "Traceback" not in \
        in_id.stderr, in_id.stderr
    missing = run("sync", "--home", phone, f"{LOOPBACK}:9", ok=(1,)).stderr
    assert "is encrypted: give its passphrase" in missing and "MESHSYNC_PASSPHRASE" in missing
    assert digest(phone) == before


def test_the_same_homes_open_sync_and_converge_with_their_keys(
        district: dict[str, Any]) -> None:
    laptop, phone = district["laptop"], district["phone"]
    key = district["here"][0]["ID"]
    run("put", "--home", phone, "voters", key, "alamat=Kampung Jila RT 7", "--partition", TPS,
        passphrase=PHONE_PASS)
    server = Server(laptop, LAPTOP_PASS)
    try:
        summary = run_json("sync", "--home", phone, server.address, passphrase=PHONE_PASS)
        live = home_bytes(laptop)  # while serve holds the store open: its WAL and shm too
        assert {"store.sqlite-wal", "store.sqlite-shm"} <= set(live), sorted(live)
        assert leaks(laptop, secrets(district["rows"])) == {}
    finally:
        server.stop()
    assert summary["changes_sent"] >= 1, summary
    record = run_json("get", "--home", laptop, "voters", key, "--partition", TPS,
                      passphrase=LAPTOP_PASS)
    assert record["fields"]["alamat"] == "Kampung Jila RT 7"
    assert leaks(laptop, secrets(district["rows"])) == {}
    assert leaks(phone, secrets(district["rows"])) == {}


def test_a_store_key_opens_only_its_store(tmp_path: Path) -> None:
    """Unit: the data key round trip through datakey.json, a host app's key, and
    SQLCipher refusing another key or a clear file with a StorageError."""
    home = tmp_path / "h"
    Home.create(home, partition=TPS)
    host_key = bytes(range(32))
    data_key = atrest.create(home, home_key=host_key)
    atrest.forget(home)
    assert atrest.unlock(home, home_key=host_key) == data_key
    with pytest.raises(atrest.WrongKeyError):
        atrest.unlock(home, home_key=bytes(32))
    with pytest.raises(atrest.LockedError):
        atrest.unlock(home)
    store = SQLiteStore(home / "store.sqlite", data_key)
    with store.transaction():
        store.set_meta("nama", b"Yohana Wenda")
    store.close()
    assert b"Yohana" not in (home / "store.sqlite").read_bytes()
    with pytest.raises(StorageError, match="does not open with this home's key"):
        SQLiteStore(home / "store.sqlite", bytes(32))
    with pytest.raises(StorageError):
        SQLiteStore(home / "store.sqlite")
    reopened = SQLiteStore(home / "store.sqlite", atrest.store_key(home))
    assert reopened.get_meta("nama") == b"Yohana Wenda"
    reopened.close()
    clear = tmp_path / "clear"
    Home.create(clear)
    SQLiteStore(clear / "store.sqlite").close()
    with pytest.raises(UsageError, match="already has a store in clear"):
        atrest.create(clear, home_key=host_key)
    atrest.forget(home)  # as a new process: the app hands its key to open_node
    with pytest.raises(atrest.WrongKeyError):
        open_node(home, home_key=bytes(32)).__enter__()
    with open_node(home, home_key=host_key) as node:
        node.put("voters", "v-1", {"nama": "Yohana Wenda"})
    assert b"Yohana" not in (home / "store.sqlite").read_bytes()
    atrest.forget(home)


def test_backup_restore_and_wipe_of_an_encrypted_home(district: dict[str, Any],
                                                      tmp_path: Path) -> None:
    phone = district["phone"]
    backup = tmp_path / "phone.backup"
    run("backup", "--home", phone, "-o", backup, passphrase=PHONE_PASS)
    with tarfile.open(backup, "r:gz") as tar:  # the bytes inside the gzip stream
        members = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                   for m in tar.getmembers() if m.isfile()}
    assert {"store.sqlite", "datakey.json"} <= set(members)
    assert [n for n, data in members.items()
            if any(s in data for s in secrets(district["rows"]))] == []
    restored = tmp_path / "restored"
    run("restore", backup, "--home", restored)
    assert len(run_json("ls", "--home", restored, "voters", passphrase=PHONE_PASS)) == \
        len(run_json("ls", "--home", phone, "voters", passphrase=PHONE_PASS))
    assert "wrong passphrase" in run("ls", "--home", restored, "voters",
                                     passphrase="tebakan-salah", ok=(1,)).stderr

    copy = tmp_path / "phone-copy"
    shutil.copytree(phone, copy)
    wiped = run_json("wipe", "--home", copy, "--yes", passphrase=PHONE_PASS)
    assert {"store.sqlite", "datakey.json"} <= set(wiped["removed"]), wiped
    assert not (copy / "store.sqlite").exists() and not (copy / "datakey.json").exists()
    assert leaks(copy, secrets(district["rows"])) == {}
    # A wiped home is never opened again: no clear store made in its place, no seq 1
    # signed again (a fork of what the device sent before its wipe).
    for args in (("put", "--home", copy, "voters", "v-1", "nama=Contoh"),
                 ("ls", "--home", copy, "voters"), ("get", "--home", copy, "voters", "v-1"),
                 ("sync", "--home", copy, "127.0.0.1:9")):
        refused = run(*args, passphrase=PHONE_PASS, ok=(1, 2), lang="id")
        assert "sudah dihapus" in refused.stderr and "meshsync init" in refused.stderr, \
            (args, refused.stderr)
    assert not (copy / "store.sqlite").exists()
    assert "wiped" in run_json("status", "--home", copy)
    lost = tmp_path / "lost-key"  # an encrypted store whose datakey.json went missing
    shutil.copytree(phone, lost)
    (lost / "datakey.json").unlink()
    refused = run("ls", "--home", lost, "voters", ok=(1, 2), lang="id")
    assert "tidak punya datakey.json" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_daemon_on_an_encrypted_home_unlocks_once_and_leaves_no_voter_in_its_files(
        district: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    laptop = tmp_path / "laptop"
    shutil.copytree(district["laptop"], laptop)
    monkeypatch.setenv(atrest.PASSPHRASE_ENV, LAPTOP_PASS)  # the daemon's environment
    daemon = DaemonProcess(laptop, laptop / "daemon.log", {}).start()
    try:
        assert len(daemon.listing("/api/records/voters")) == len(district["rows"])
        monkeypatch.delenv(atrest.PASSPHRASE_ENV)  # an edit through the daemon needs none
        key = district["here"][1]["ID"]
        run("put", "--home", laptop, "voters", key, "alamat=Kampung Jila RT 9",
            "--partition", TPS)
        assert {"daemon.json", "daemon.log", "store.sqlite-wal"} <= set(home_bytes(laptop))
        assert leaks(laptop, secrets(district["rows"])) == {}
    finally:
        daemon.stop()
    assert leaks(laptop, secrets(district["rows"])) == {}
    record = run_json("get", "--home", laptop, "voters", key, "--partition", TPS,
                      passphrase=LAPTOP_PASS)
    assert record["fields"]["alamat"] == "Kampung Jila RT 9"


def test_init_encrypt_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No passphrase off a terminal, a short one, or no SQLCipher: one line each, and
    no home made."""
    home = tmp_path / "h"
    no_pass = run("init", "--home", home, "--encrypt", ok=(1,), lang="id").stderr
    assert no_pass.startswith("meshsync: gagal: --encrypt memerlukan kata sandi"), no_pass
    short = run("init", "--home", home, "--encrypt", passphrase="12345", ok=(1,)).stderr
    assert "too short" in short, short
    assert not (home / "device.key").exists()
    monkeypatch.setitem(sys.modules, "sqlcipher3", None)  # as where it is not installed
    with pytest.raises(StorageError, match=r"pip install 'meshsync\[encrypted\]'"):
        cipher_driver()


def test_an_app_starts_a_node_on_a_home_encrypted_with_its_key(tmp_path: Path) -> None:
    """The embedding path (docs/android.md): the app makes the home, encrypts it with
    32 bytes it keeps (the Android Keystore's part), and hands them to ``start``."""
    from meshsync.daemon.embed import start

    from meshsync.host.enrol import enrol
    from meshsync.trust import make_csr

    district = District(tmp_path)
    home = tmp_path / "app-phone"
    Home.create(home, partition=TPS)
    (home / "device.csr").write_bytes(make_csr(Home.open(home).load_key(), "hp aplikasi"))
    host_key = os.urandom(32)
    atrest.create(home, home_key=host_key)
    run("authority", "issue", "--home", district.authority, home / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", tmp_path / "hp.crt")
    enrol(Home.open(home), (tmp_path / "hp.crt").read_bytes(), "hp.crt")
    atrest.forget(home)  # as the app's next start
    local = {"api": f"{LOOPBACK}:0", "listen": f"{LOOPBACK}:0", "discovery": ["static"]}
    with pytest.raises(atrest.WrongKeyError):
        start(home, config_overrides=local, home_key=bytes(32))
    node = start(home, config_overrides=local, home_key=host_key)
    try:
        body = json.dumps({"fields": {"nama": "Yosina Contoh Uji"}}).encode()
        request = urllib.request.Request(
            f"{node.api_url}/api/records/voters/v-1", data=body, method="PUT",
            headers={"Authorization": f"Bearer {node.token}",
                     "Content-Type": "application/json"})
        with NO_PROXY.open(request, timeout=15) as reply:
            assert reply.status == 200
    finally:
        node.stop()
    atrest.forget(home)
    assert leaks(home, {b"Yosina Contoh Uji"}) == {}
    with open_node(home, home_key=host_key) as opened:
        assert opened.get("voters", "v-1", TPS).fields["nama"] == "Yosina Contoh Uji"  # type: ignore[union-attr]
    atrest.forget(home)
