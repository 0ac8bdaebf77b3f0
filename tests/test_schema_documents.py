"""Issue 13 item 3: a collection's rules are a signed, versioned schema document that
travels from the authority like credentials (docs/architecture.md §4, §6)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from meshsync.cli.main import main as cli
from meshsync.coklit import register
from meshsync.coklit.document import PACKAGE, document
from meshsync.coklit.sample import generate

from meshsync.model.errors import ValidationError
from meshsync.replica.policy import OpenTrust
from meshsync.trust import create_authority
from meshsync.trust.schemadoc import SchemaBook, decode_schema, make_schema
from tests.helpers import Device

TPS = "mimika/jila/diloa/tps-003"


def run(*args: str | Path, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    else:
        assert result.exit_code != 0, result.stdout
    return result


def readme_district(tmp: Path) -> dict[str, Path]:
    """The README's "Setting up a district" commands, word for word."""
    h = {name: tmp / name for name in ("KPU", "PPK", "PHONE1", "PHONE2")}
    run("authority", "init", "--home", h["KPU"], "--name", "KPU Mimika")
    run("authority", "schema", "publish", "--home", h["KPU"], "coklit")
    run("init", "--home", h["PPK"], "--partition", "mimika/jila")
    run("authority", "request", "--home", h["PPK"], "--name", "PPK Jila")
    run("authority", "delegate", "--home", h["KPU"], h["PPK"] / "authority.csr",
        "--scope", "mimika/jila", "-o", tmp / "jila-ca.crt")
    run("authority", "install", "--home", h["PPK"], tmp / "jila-ca.crt")
    run("authority", "issue", "--home", h["KPU"], h["PPK"] / "device.csr", "--role",
        "gateway", "--scope", "mimika/jila", "-o", tmp / "ppk.crt")
    run("enroll", "--home", h["PPK"], tmp / "ppk.crt")
    for n, tps in ((1, "tps-003"), (2, "tps-004")):
        phone = h[f"PHONE{n}"]
        run("init", "--home", phone, "--partition", f"mimika/jila/diloa/{tps}")
        run("authority", "issue", "--home", h["PPK"], phone / "device.csr", "--role",
            "pantarlih", "--scope", f"mimika/jila/diloa/{tps}", "-o", tmp / f"phone{n}.crt")
        run("enroll", "--home", phone, tmp / f"phone{n}.crt")
    return h


def held(home: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        run("schema", "--home", home, "--json").stdout)["schemas"]
    return rows


def a_voter() -> dict[str, Any]:
    """A valid voter of TPS 3 of Diloa (distrik Jila), from the sample generator."""
    voter = next(v for v in generate(7, voters_per_tps=3, tps_per_kampung=3)
                 if v.partition == TPS)
    return dict(voter.fields)


def test_readme_district_phone_validates_without_config(tmp_path: Path) -> None:
    homes = readme_district(tmp_path)
    for name in ("PPK", "PHONE1", "PHONE2"):
        assert "schema" not in (homes[name] / "config.toml").read_text(encoding="utf-8")
        assert [(r["collection"], r["version"]) for r in held(homes[name])] == [("voters", 1)]
    bad = run("put", "--home", homes["PHONE1"], "voters", "v-0006", "coklit=XYZ",
              "tms=banana", ok=False)
    assert "coklit: is 'XYZ'; use one of MS" in bad.stderr
    assert "tms: is 'banana'" in bad.stderr
    voter = {**a_voter(), "coklit": "MS"}
    fields = [f"{k}={v}" if isinstance(v, str) else f"{k}:={json.dumps(v)}"
              for k, v in voter.items()]
    run("put", "--home", homes["PHONE1"], "voters", "v-0006", *fields)
    again = run("put", "--home", homes["PHONE1"], "voters", "v-0006", "coklit=XYZ", ok=False)
    assert "coklit: is 'XYZ'" in again.stderr


def test_newer_version_reaches_phone_by_bundle(tmp_path: Path) -> None:
    homes = readme_district(tmp_path)
    newer = document()
    del newer["body"]["fields"]["coklit"]["codes"]["baru"]  # v2: no more new voters
    source = tmp_path / "voters-v2.json"
    source.write_text(json.dumps(newer), encoding="utf-8")
    run("authority", "schema", "publish", "--home", homes["KPU"], "coklit", "--from", source)
    voter = {**a_voter(), "coklit": "baru"}
    fields = [f"{k}={v}" if isinstance(v, str) else f"{k}:={json.dumps(v)}"
              for k, v in voter.items()]
    run("put", "--home", homes["PHONE1"], "voters", "v-0007", *fields)  # v1 allows baru
    bundle = tmp_path / "kpu.bundle"
    run("bundle", "export", "--clear", "--home", homes["KPU"], "-o", bundle)
    run("bundle", "import", "--home", homes["PHONE1"], bundle)
    rows = held(homes["PHONE1"])
    assert [(r["version"], r["newest"]) for r in rows] == [(1, False), (2, True)]
    refused = run("put", "--home", homes["PHONE1"], "voters", "v-0008", *fields, ok=False)
    assert "coklit: is 'baru'; use one of MS" in refused.stderr


class SchemaTrust(OpenTrust):
    """Accepts every author (no certificates needed) and holds schema documents."""

    def __init__(self, *blobs: bytes) -> None:
        self.schemas = SchemaBook()
        for blob in blobs:
            self.schemas.add(decode_schema(blob))


def _documents() -> tuple[bytes, bytes]:
    """(v1, v2) of ``voters``; v2 refuses coklit ``baru``."""
    key, root = create_authority("KPU Mimika", datetime.now(UTC))
    first = document()
    second = copy.deepcopy(first)
    del second["body"]["fields"]["coklit"]["codes"]["baru"]
    return (make_schema(key, root, "voters", 1, first["body"], 1),
            make_schema(key, root, "voters", 2, second["body"], 2))


def _device(name: str, *blobs: bytes) -> Device:
    device = Device.memory(name, partition=TPS)
    device.node.trust = SchemaTrust(*blobs)
    device.node.validators.packages = lambda n: PACKAGE if n == "coklit" else None
    return device


def test_change_valid_under_v1_is_kept_and_flagged_by_v2_node() -> None:
    v1, v2 = _documents()
    officer, laptop, later = _device("officer", v1), _device("laptop", v1, v2), _device("l", v1)
    officer.put("voters", "v-0007", {**a_voter(), "coklit": "baru"}, partition=TPS)
    with pytest.raises(ValidationError):  # no version allows it
        officer.put("voters", "v-0007", {"coklit": "XYZ"}, partition=TPS)
    changes = list(officer.changes_since({}))
    assert len(changes) == 1  # the second put was refused locally
    report = laptop.receive(changes)
    assert report.applied == 1 and not report.invalid
    assert len(report.outdated) == 1
    assert "valid under schema voters v1" in report.outdated[0].reason
    assert "coklit: is 'baru'" in report.outdated[0].reason
    assert laptop.get("voters", "v-0007", TPS).fields["coklit"] == "baru"
    assert laptop.version_vector() == officer.version_vector()  # kept: it forwards it
    assert any(r.stage == "schema version" for r in laptop.store.refusals())
    # a node that learns v2 only after applying the change ends in the same state
    later.receive(changes)
    later.node.trust.schemas.add(decode_schema(v2))
    assert later.canonical_state() == laptop.canonical_state()


def test_change_no_held_version_allows_is_kept_out() -> None:
    v1, v2 = _documents()
    author, laptop = Device.memory("author", partition=TPS), _device("laptop", v1, v2)
    author.put("voters", "v-0009", {**a_voter(), "coklit": "XYZ"}, partition=TPS)
    report = laptop.receive(list(author.changes_since({})))
    assert len(report.invalid) == 1 and not report.outdated
    assert laptop.get("voters", "v-0009", TPS) is None


@pytest.mark.parametrize("kind", ["document", "config"])
def test_receive_refuses_new_voter_with_only_nama_as_a_local_put(kind: str) -> None:
    v1, _v2 = _documents()
    author = Device.memory("author", partition=TPS)  # no validator: writes anything
    home = _device("home", v1) if kind == "document" else Device.memory("home", partition=TPS)
    if kind == "config":
        register(home.node)
    with pytest.raises(ValidationError) as local:
        home.put("voters", "v-0010", {"nama": "Yosina"}, partition=TPS)
    author.put("voters", "v-0010", {"nama": "Yosina"}, partition=TPS)
    report = home.receive(list(author.changes_since({})))
    assert len(report.invalid) == 1
    expected = "; ".join(f"voters/v-0010 {f}: {m}" for f, m in local.value.errors)
    assert report.invalid[0].reason == expected
    assert home.get("voters", "v-0010", TPS) is None


def test_document_validator_agrees_with_the_coded_one() -> None:
    """The coklit document, interpreted, refuses the same fields of sample voters as
    the coded validator (messages of the declarative parts are the library's)."""
    v1, _ = _documents()
    by_document = _device("d", v1).node.validators["voters"]
    coded = Device.memory("c", partition=TPS)
    register(coded.node)
    by_code = coded.node.validators["voters"]
    samples = generate(3, voters_per_tps=5, tps_per_kampung=1, coklit_results=True)
    broken = [{"nik": "123"}, {"tps": 0}, {"umur": True}, {"rt": "abcd"},
              {"disabilitas": ["x"]}, {"coklit": "TMS"}, {"tms": "meninggal"},
              {"distrik": "Nowhere"}, {"nama": "R2D2"}, {"dpt": {"nama": 5}}]
    for sample in samples[:20]:
        for change in [{}, *broken]:
            fields = {**sample.fields, **change}
            for partial in (False, True):
                args = ("k", fields)
                mine = by_document(*args, partial=partial, partition=sample.partition)
                theirs = by_code(*args, partial=partial, partition=sample.partition)
                assert sorted(f for f, _ in mine) == sorted(f for f, _ in theirs), \
                    (change, partial, mine, theirs)


def test_newer_version_reaches_phone_by_sync(tmp_path: Path) -> None:
    """KPU's v2 reaches the laptop by bundle and the phone by a sync session with it."""
    from meshsync.host.local import open_node
    from meshsync.protocol.session import SessionConfig
    from tests.driverpair import run_pair, session

    homes = readme_district(tmp_path)
    run("authority", "schema", "publish", "--home", homes["KPU"], "coklit", "--version", "2")
    bundle = tmp_path / "kpu.bundle"
    run("bundle", "export", "--clear", "--home", homes["KPU"], "-o", bundle)
    run("bundle", "import", "--home", homes["PPK"], bundle)
    assert [r["version"] for r in held(homes["PHONE1"])] == [1]
    with open_node(homes["PPK"]) as laptop, open_node(homes["PHONE1"]) as phone:
        run_pair(session(laptop, SessionConfig(role="gateway", share_scope="mimika/jila")),
                 session(phone, SessionConfig(share_scope="mimika/jila")))
        validator: Any = phone.validators["voters"]
        assert validator.version == 2
    assert [(r["version"], r["newest"]) for r in held(homes["PHONE1"])] == [(1, False),
                                                                             (2, True)]


def test_only_the_root_publishes_and_a_malformed_body_refuses_edits(tmp_path: Path) -> None:
    homes = readme_district(tmp_path)
    bad = run("authority", "schema", "publish", "--home", homes["PPK"], "coklit", ok=False)
    assert "only the root authority signs schema documents" in bad.stderr
    source = tmp_path / "broken.json"
    source.write_text(json.dumps({"collection": "voters", "body": {"fields": {"nama": 3}}}),
                      encoding="utf-8")
    refused = run("authority", "schema", "publish", "--home", homes["KPU"], "x", "--from",
                  source, ok=False)
    assert "malformed" in refused.stderr
    key, root = create_authority("KPU Mimika", datetime.now(UTC))
    broken = make_schema(key, root, "voters", 3, {"fields": {"nama": 3}}, 1)
    device = _device("d", broken)
    with pytest.raises(ValidationError, match="voters v3 is malformed"):
        device.put("voters", "v-1", {"nama": "Yosina"}, partition=TPS)


def test_a_schema_signed_by_another_authority_is_refused(tmp_path: Path) -> None:
    from meshsync.model.errors import AuthorizationError
    from meshsync.trust import TrustStore

    homes = readme_district(tmp_path)
    key, root = create_authority("Not KPU", datetime.now(UTC))
    foreign = make_schema(key, root, "voters", 9, document()["body"], 1)
    trust = TrustStore([(homes["KPU"] / "root.crt").read_bytes()])
    with pytest.raises(AuthorizationError, match="not the trusted root authority"):
        trust.add(foreign)
