"""A phone short of storage refuses received data, never its officer's edits (B17).

docs/failure-cases.md B17: a nearly full phone that receives a big batch must stop
accepting inbound changes when free space reaches its reserve and say so; data entry
keeps working from the reserve; a write that fails for lack of space rolls back its
whole transaction; inbound sync resumes once space is freed.

The reserve is ``storage_reserve_mb`` in the home's ``config.toml``. The first tests
set it above the disk's real free space (the check is the real ``statvfs`` of the
home's disk); the last one, as root, puts the home on a small tmpfs of its own and
fills it for real.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from netfixtures import DISTRICT, VILLAGE, District, Servers, count_changes, run, run_json, sync

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.errors import StorageError, StorageLowError, UsageError
from meshsync.protocol.bundle import export_bundle, import_bundle

HUGE_MB = 2**40  # more MiB than any disk has free


def set_reserve(home: Path, mb: float) -> None:
    config = Home.open(home).config()
    Home.open(home).write_config({**config, "storage_reserve_mb": mb})


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reserve")
    district = District(root / "d")
    district.enrol("laptop", "gateway", DISTRICT)
    district.enrol("phone-a", scope=VILLAGE, partition=f"{VILLAGE}/tps-001")
    return root / "d"


@pytest.fixture
def district(template: Path, tmp_path: Path) -> District:
    shutil.copytree(template, tmp_path / "d")
    return District(tmp_path / "d")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    found = Servers(tmp_path)
    yield found
    found.stop_all()


def put(home: Path, key: str, *assignments: str) -> None:
    run("put", "--home", home, "voters", key, *assignments)


def test_sync_into_a_phone_below_its_reserve_is_refused_and_resumes(
        district: District, servers: Servers) -> None:
    laptop, phone = district.home("laptop"), district.home("phone-a")
    for i in range(5):
        put(laptop, f"l-{i:04d}", f"nama=Contoh Laptop {i}", "status=MS",
            f"--partition={VILLAGE}/tps-001")
    put(phone, "p-0001", "nama=Yosina Contoh", "status=MS")
    before = count_changes(phone)
    set_reserve(phone, HUGE_MB)
    server = servers.start(laptop)

    refused = sync(phone, server, check=False)
    assert refused["rc"] != 0
    assert "storage low" in refused["stderr"] + str(refused.get("error"))
    assert "storage_reserve_mb" in refused["stderr"] + str(refused.get("error"))
    assert count_changes(phone) == before  # nothing of the batch stored
    server.wait_for_log(r"storage low")  # the sending side is told why, too
    # The officer's data entry keeps working from the reserve.
    put(phone, "p-0002", "nama=Debora Contoh", "status=MS")
    assert run_json("get", "--home", phone, "voters", "p-0002")["fields"]["nama"] == \
        "Debora Contoh"
    server.assert_alive()
    # The officer can see why: status says so.
    assert run_json("status", "--home", phone)["storage"]["low"] is True
    assert "storage low:" in run("status", "--home", phone).stdout

    set_reserve(phone, 0)  # space freed
    assert run_json("status", "--home", phone)["storage"]["low"] is False
    done = sync(phone, server)
    assert done["converged"] and done["changes_received"] == 5
    keys = {r["key"] for r in run_json("ls", "--home", phone, "voters")}
    assert {f"l-{i:04d}" for i in range(5)} | {"p-0001", "p-0002"} <= keys


def test_bundle_import_below_the_reserve_is_refused_with_one_line(
        district: District, tmp_path: Path) -> None:
    laptop, phone = district.home("laptop"), district.home("phone-a")
    put(laptop, "l-0001", "nama=Contoh", f"--partition={VILLAGE}/tps-001")
    bundle = tmp_path / "laptop.msb"
    run("bundle", "export", "--clear", "--home", laptop, "-o", bundle)
    set_reserve(phone, HUGE_MB)
    proc = run("bundle", "import", "--home", phone, bundle, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "storage low" in lines[0], proc.stderr
    assert run("get", "--home", phone, "voters", "l-0001", check=False).returncode != 0
    set_reserve(phone, 0)
    run("bundle", "import", "--home", phone, bundle)
    assert run_json("get", "--home", phone, "voters", "l-0001")["fields"]["nama"] == "Contoh"


@pytest.mark.parametrize("value", ["64", -1, True, float("nan"), float("inf"), 2**60])
def test_a_bad_reserve_setting_is_named(district: District, value: object) -> None:
    phone = district.home("phone-a")
    Home.open(phone).write_config({**Home.open(phone).config(), "storage_reserve_mb": value})
    with pytest.raises(UsageError, match="storage_reserve_mb"), open_node(phone):
        pass


# -- a real full disk (root: a tmpfs of its own) ----------------------------------------


def _mount_tmpfs(path: Path, size_mb: int, *, remount: bool = False) -> None:
    options = f"{'remount,' if remount else ''}size={size_mb}m"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a small tmpfs (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    _mount_tmpfs(mount, 12)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_rolls_back_the_batch_and_keeps_every_local_record(
        district: District, small_disk: Path, tmp_path: Path) -> None:
    laptop = district.home("laptop")
    phone = small_disk / "phone-a"
    shutil.copytree(district.home("phone-a"), phone)
    with open_node(laptop) as node:  # about 24 MB of baseline for the phone's TPS
        rows = [("put", "voters", f"b-{i:05d}", {"nama": f"Contoh {i}", "catatan": "x" * 2000})
                for i in range(12_000)]
        for start in range(0, len(rows), 500):
            node.write(f"{VILLAGE}/tps-001", rows[start:start + 500])
        data = io.BytesIO()
        export_bundle(node, data)
    for i in range(7):
        put(phone, f"p-{i:04d}", f"nama=Pemilih {i}", "status=MS")
    held = count_changes(phone)

    set_reserve(phone, 4)  # the guard sees the bundle will not fit
    with open_node(phone) as node, pytest.raises(StorageLowError, match="storage low"):
        import_bundle(node, io.BytesIO(data.getvalue()))
    put(phone, "p-0007", "nama=Pemilih 7", "status=MS")  # typing still works

    set_reserve(phone, 0)  # no guard: SQLite itself runs out of space mid-transaction
    with open_node(phone) as node, pytest.raises(StorageError):
        import_bundle(node, io.BytesIO(data.getvalue()))
    assert count_changes(phone) == held + 1
    with closing(sqlite3.connect(phone / "store.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    keys = {r["key"] for r in run_json("ls", "--home", phone, "voters")}
    assert keys == {f"p-{i:04d}" for i in range(8)}

    _mount_tmpfs(small_disk, 400, remount=True)  # space freed
    with open_node(phone) as node:
        report = import_bundle(node, io.BytesIO(data.getvalue()))
    assert report.apply.applied == 24 and not report.apply.refused
    assert len(run_json("ls", "--home", phone, "voters")) == 8 + 12_000


def test_a_serving_phone_below_its_reserve_tells_the_client_why(
        district: District, servers: Servers) -> None:
    laptop, phone = district.home("laptop"), district.home("phone-a")
    put(laptop, "l-0001", "nama=Contoh", f"--partition={VILLAGE}/tps-001")
    set_reserve(phone, HUGE_MB)
    server = servers.start(phone)
    refused = sync(laptop, server, check=False)
    assert refused["rc"] != 0
    assert "storage low" in refused["stderr"] + str(refused.get("error")), refused
    server.assert_alive()
    assert run("get", "--home", phone, "voters", "l-0001", check=False).returncode != 0


def test_a_config_that_is_not_utf8_is_named_in_one_line(district: District) -> None:
    phone = district.home("phone-a")
    (phone / "config.toml").write_bytes(b"\xff\xfe partition = 1\n")
    proc = run("put", "--home", phone, "voters", "v-1", "nama=Contoh", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "config.toml: not UTF-8" in lines[0]
