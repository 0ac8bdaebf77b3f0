"""Issue 13's "Must show", end to end: the README's district, word for word, on loopback.

The commands of README.md "Setting up a district" (KPU, its central server, the PPK
laptop, two phones) run as written, with relative paths in a temporary folder, as real
``meshsync`` processes, plus a third phone enrolled the same way. Central keeps SQLite.
Sessions are ``meshsync serve``/``meshsync sync`` on 127.0.0.1 only. It shows:

1. the district's sub-authority cannot mint ``central`` or ``admin``;
2. an invalid edit is refused with its reason on the phone (nothing stored), and a
   change the phone accepts but central refuses shows on the phone, after phone ->
   laptop -> central -> laptop -> phone, as refused at central with the reason, never
   safe at central. Every device validates with the same signed schema (and a newer
   version travels up with the changes), so the case is a fork: a phone restored from
   a backup reuses seqs central already holds from the phone's earlier USB bundle;
3. a re-import of the DPT at central keeps an officer's TMS and lists it as kept;
   after syncing down the voter is TMS everywhere;
4. an imported voter is *belum dicoklit* until an officer acts; progress ("dicoklit X
   dari Y" with MS/TMS/ubah/baru) counts the visits, at central and on a phone.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netfixtures import MESHSYNC, Servers, sync

README = Path(__file__).resolve().parent.parent / "README.md"

#: README.md "Setting up a district", copied verbatim (the test checks it still is).
SETUP = """\
meshsync authority init --home KPU --name "KPU Mimika"
meshsync authority schema publish --home KPU coklit
meshsync init --home CENTRAL --partition mimika
meshsync authority issue --home KPU CENTRAL/device.csr --role central --scope "" -o central.crt
meshsync enroll --home CENTRAL central.crt
meshsync init --home PPK --partition mimika/jila
meshsync authority request --home PPK --name "PPK Jila"
meshsync authority delegate --home KPU PPK/authority.csr --scope mimika/jila -o jila-ca.crt
meshsync authority install --home PPK jila-ca.crt
meshsync authority issue --home KPU PPK/device.csr --role gateway --scope mimika/jila -o ppk.crt
meshsync enroll --home PPK ppk.crt
meshsync init --home PHONE1 --partition mimika/jila/diloa/tps-003
meshsync authority issue --home PPK PHONE1/device.csr --role pantarlih --scope mimika/jila/diloa/tps-003 -o phone1.crt
meshsync enroll --home PHONE1 phone1.crt
meshsync init --home PHONE2 --partition mimika/jila/diloa/tps-004
meshsync authority issue --home PPK PHONE2/device.csr --role pantarlih --scope mimika/jila/diloa/tps-004 -o phone2.crt
meshsync enroll --home PHONE2 phone2.crt
"""  # noqa: E501

#: The third phone, enrolled the same way.
PHONE3 = """\
meshsync init --home PHONE3 --partition mimika/jila/diloa/tps-005
meshsync authority issue --home PPK PHONE3/device.csr --role pantarlih --scope mimika/jila/diloa/tps-005 -o phone3.crt
meshsync enroll --home PHONE3 phone3.crt
"""  # noqa: E501

TPS = {1: "mimika/jila/diloa/tps-003", 2: "mimika/jila/diloa/tps-004",
       3: "mimika/jila/diloa/tps-005"}


class Shell:
    """Runs ``meshsync`` command lines in the district's folder (relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, line: str, *, ok: bool = True) -> subprocess.CompletedProcess[str]:
        words = shlex.split(line)
        assert words[0] == "meshsync", line
        proc = subprocess.run([*MESHSYNC, *words[1:]], cwd=self.root, capture_output=True,
                              text=True, timeout=120, check=False)
        if ok:
            assert proc.returncode == 0, f"{line}\nexit {proc.returncode}: {proc.stderr}"
        else:
            assert proc.returncode != 0, f"{line} should have failed: {proc.stdout}"
        return proc

    def json(self, line: str) -> Any:
        return json.loads(self(f"{line} --json").stdout)

    def script(self, text: str) -> None:
        for line in text.splitlines():
            self(line)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    (tmp_path / "logs").mkdir()
    the_servers = Servers(tmp_path / "logs")
    yield the_servers
    the_servers.stop_all()


def round_trip(sh: Shell, servers: Servers, *phones: str) -> None:
    """phones -> laptop -> central -> laptop -> phones, one ``meshsync sync`` each."""
    laptop = servers.start(sh.root / "PPK")
    for phone in phones:
        sync(sh.root / phone, laptop, check=False)
    laptop.stop()
    central = servers.start(sh.root / "CENTRAL")
    sync(sh.root / "PPK", central, check=False)
    central.stop()
    laptop = servers.start(sh.root / "PPK")
    for phone in phones:
        sync(sh.root / phone, laptop, check=False)
    laptop.stop()


def voter_of(csv_path: Path, kampung: str, tps: int, index: int = 0) -> str:
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["KAMPUNG"] == kampung
                and int(r["TPS"]) == tps]
    return rows[index]["ID"]


def progress(sh: Shell, home: str) -> tuple[int, int, dict[str, int]]:
    """(done, records, status counts) of distrik Jila by ``coklit progress --json``."""
    shown = sh.json(f"meshsync coklit progress --home {home} --level distrik")
    row = shown["district"]["mimika/jila"]
    return row["done"], row["records"], row["status"]


def coklit_of(sh: Shell, home: str, key: str) -> tuple[Any, Any]:
    record = sh.json(f"meshsync get --home {home} voters {key}")
    fields = record["fields"]
    return fields.get("coklit"), fields.get("tms")


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The README's district with PHONE3, central's imported DPT synced down to every
    phone; (folder, number of voters). Each test works on its own copy."""
    readme = README.read_text(encoding="utf-8")
    for line in SETUP.splitlines():
        assert line in readme, f"README.md no longer says: {line}"
    root = tmp_path_factory.mktemp("district")
    sh = Shell(root)
    sh.script(SETUP)
    sh.script(PHONE3)
    sh("meshsync coklit generate --seed 1 --distrik Jila --voters-per-tps 5 "
       "--tps-per-kampung 5 -o jila.csv")
    imported = sh.json("meshsync coklit import jila.csv --home CENTRAL")
    total = int(imported["imported"])
    assert 200 <= total <= 600 and imported["bad"] == [], imported
    (root / "logs").mkdir()
    servers = Servers(root / "logs")
    try:
        round_trip(sh, servers, "PHONE1", "PHONE2", "PHONE3")
    finally:
        servers.stop_all()
    return root, total


def copy_of(district: tuple[Path, int], tmp_path: Path) -> tuple[Shell, Path, int]:
    root = tmp_path / "district"
    shutil.copytree(district[0], root, ignore=shutil.ignore_patterns("logs"))
    return Shell(root), root, district[1]


@pytest.mark.slow
def test_readme_district_end_to_end(district: tuple[Path, int], tmp_path: Path,
                                    servers: Servers) -> None:
    sh, root, total = copy_of(district, tmp_path)

    # 1. a sub-authority cannot mint central or admin
    for role in ("central", "admin"):
        refused = sh("meshsync authority issue --home PPK PHONE3/device.csr "
                     f"--role {role} --scope mimika/jila -o x.crt", ok=False)
        assert "only the root" in refused.stderr, refused.stderr
        assert refused.stderr.startswith("meshsync: error:"), refused.stderr
        assert not (root / "x.crt").exists()

    # 4. central imported a generated DPT: every voter is belum dicoklit, everywhere
    dpt = root / "jila.csv"
    v_tms, v_ms = voter_of(dpt, "Diloa", 3, 0), voter_of(dpt, "Diloa", 3, 1)
    v_ubah = voter_of(dpt, "Diloa", 4, 0)
    v_late, v_late2 = voter_of(dpt, "Diloa", 5, 0), voter_of(dpt, "Diloa", 5, 1)
    for home in ("CENTRAL", "PPK", "PHONE1", "PHONE2", "PHONE3"):
        assert progress(sh, home) == (0, total, {"belum dicoklit": total}), home
        assert coklit_of(sh, home, v_tms) == (None, None)

    # 2. an invalid edit is refused on the phone with its reason; nothing is stored
    before = sh.json(f"meshsync get --home PHONE1 voters {v_ms}")
    bad = sh(f"meshsync put --home PHONE1 voters {v_ms} coklit=XYZ", ok=False)
    assert "coklit: is 'XYZ'; use one of MS" in bad.stderr, bad.stderr
    assert sh.json(f"meshsync get --home PHONE1 voters {v_ms}") == before

    # officers' visits: TMS with a reason, MS, ubah; progress counts them everywhere
    sh(f"meshsync put --home PHONE1 voters {v_tms} coklit=TMS tms=meninggal")
    sh(f"meshsync put --home PHONE1 voters {v_ms} coklit=MS")
    sh(f"meshsync put --home PHONE2 voters {v_ubah} coklit=ubah alamat='Jalan Contoh 7'")
    round_trip(sh, servers, "PHONE1", "PHONE2", "PHONE3")
    counts = {"MS": 1, "TMS": 1, "ubah": 1, "belum dicoklit": total - 3}
    for home in ("CENTRAL", "PHONE3"):
        assert progress(sh, home) == (3, total, counts), home
        line = sh(f"meshsync coklit progress --home {home} --level distrik").stdout
        assert f"dicoklit 3 dari {total} (MS 1, TMS 1, ubah 1, baru 0; belum dicoklit " \
            f"{total - 3})" in line, line
    for phone in ("PHONE1", "PHONE2"):
        custody = sh.json(f"meshsync status --home {phone}")["custody"]
        assert [f["safe_at_central"] for f in custody["feeds"]] == [True], custody
        assert custody["refused"] == []

    # 3. a re-import of the DPT at central keeps the officer's TMS and says so
    assert coklit_of(sh, "CENTRAL", v_tms) == ("TMS", "meninggal")
    again = sh.json("meshsync coklit import jila.csv --home CENTRAL")
    assert (again["new"], again["updated"], again["applied"], again["conflicts"]) == \
        (0, 0, 0, []), again
    assert again["kept"] == 5, again  # coklit+tms, coklit, coklit+alamat
    kept = {(k["key"], k["field"]): (k["officer"], k["file"]) for k in again["kept_fields"]}
    assert kept[(v_tms, "coklit")] == ("TMS", None), again
    assert kept[(v_tms, "tms")] == ("meninggal", None), again
    assert kept[(v_ubah, "alamat")][0] == "Jalan Contoh 7", again
    round_trip(sh, servers, "PHONE1", "PHONE2", "PHONE3")
    for home in ("CENTRAL", "PPK", "PHONE1", "PHONE2", "PHONE3"):
        assert coklit_of(sh, home, v_tms) == ("TMS", "meninggal"), home

    # 2 (again). a change the phone accepts but central refuses: PHONE3's officer sends
    # a visit to KPU by USB stick (a bundle), then the phone is reset and restored from
    # a backup made before it; her next visits reuse seqs central already holds (a fork)
    shutil.copytree(root / "PHONE3", root / "PHONE3-backup")
    sh(f"meshsync put --home PHONE3 voters {v_late} coklit=MS")
    sh("meshsync bundle export --home PHONE3 -o phone3.bundle")
    sh("meshsync bundle import --home CENTRAL phone3.bundle")
    shutil.rmtree(root / "PHONE3")
    (root / "PHONE3-backup").rename(root / "PHONE3")
    sh(f"meshsync put --home PHONE3 voters {v_late} coklit=TMS tms=pindah_domisili")
    sh(f"meshsync put --home PHONE3 voters {v_late2} coklit=MS")

    round_trip(sh, servers, "PHONE3")
    custody3 = sh.json("meshsync status --home PHONE3")["custody"]
    (feed3,) = custody3["feeds"]
    assert feed3["safe_at_central"] is False, custody3
    assert (feed3["local"], feed3["gateway"], feed3["central"], feed3["central_refused"]) \
        == (2, 2, 0, 2), feed3
    # central's receipt names another change at seq 1 (its head check), and refuses seq 2
    head, refusal = custody3["refused"]
    assert (head["seq"], head["at"], head["stage"]) == (1, "central", "fork"), head
    assert "another change at seq 1" in head["reason"], head
    assert (refusal["partition"], refusal["seq"], refusal["at"], refusal["stage"]) == \
        (TPS[3], 2, "central", "fork"), refusal
    assert f"forked its feed {TPS[3]} at seq 1" in refusal["reason"], refusal
    assert refusal["edits"] == [{"collection": "voters", "key": v_late2,
                                 "fields": ["coklit"], "deleted": False}]
    text3 = sh("meshsync status --home PHONE3").stdout
    assert "refused at central" in text3 and "safe at central" not in text3, text3


@pytest.mark.slow
def test_a_restored_phone_is_not_safe_at_central_with_another_change(
        district: tuple[Path, int], tmp_path: Path, servers: Servers) -> None:
    """PHONE3 sends its visit (seq 1) to KPU by USB stick, is restored from a backup
    made before it, and records another visit as its seq 1. Version vectors on both
    sides say seq 1; the sessions see the fork by the head checks (never "converged"),
    central keeps the first, and central's receipt names its seq 1 by a head check, so
    the phone does not count its own seq 1 as held at central: not safe, a fork."""
    sh, root, _total = copy_of(district, tmp_path)
    voter = voter_of(root / "jila.csv", "Diloa", 5, 0)
    shutil.copytree(root / "PHONE3", root / "PHONE3-backup")
    sh(f"meshsync put --home PHONE3 voters {voter} coklit=MS")
    sh("meshsync bundle export --home PHONE3 -o phone3.bundle")
    sh("meshsync bundle import --home CENTRAL phone3.bundle")
    shutil.rmtree(root / "PHONE3")
    (root / "PHONE3-backup").rename(root / "PHONE3")
    sh(f"meshsync put --home PHONE3 voters {voter} coklit=TMS tms=pindah_domisili")
    round_trip(sh, servers, "PHONE3")
    assert coklit_of(sh, "CENTRAL", voter) == ("MS", None)  # not the phone's change
    custody = sh.json("meshsync status --home PHONE3")["custody"]
    (feed,) = custody["feeds"]
    assert feed["safe_at_central"] is False, feed
    # the sessions saw the fork (head checks): central (and the laptop, which now holds
    # central's seq 1 as evidence) list it in their receipts, shown with the reason
    (fork,) = [r for r in custody["refused"] if r["at"] == "central"]
    assert (fork["seq"], fork["stage"]) == (1, "fork"), fork
    assert "forked its feed" in fork["reason"], fork
    assert (feed["central"], feed["central_refused"]) == (0, 1), feed
