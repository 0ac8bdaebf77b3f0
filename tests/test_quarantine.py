"""Quarantine (docs/failure-cases.md B14): a node that accepted a revoked device's changes
past its revocation point before it learned the revocation takes them back when it
learns it, and then holds exactly what a node that refused them from the start holds.

Library tests run on every store (memory, SQLite, PostgreSQL when a server can be
had: tests/pg.py) with real certificates and revocations; the last tests drive the
real ``meshsync`` command (bundles, ``authority revoke``, ``log``).

Made-up devices: officers A and B (honest), a thief holding a copied key (X), the
phone under test (R) and a reference phone (P) that knew the revocation before any
of X's changes arrived.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import START_MS, Device, all_changes, device_key, exchange
from test_trust_bundles import TPS1, VILLAGE, cli, enrolled, export, import_json, keys_in

from meshsync.host.home import Home
from meshsync.model.identity import device_id
from meshsync.protocol.bundle import export_bundle, import_bundle
from meshsync.store import MemoryStore, SQLiteStore, Store
from meshsync.trust import (
    AuthorityKey,
    TrustStore,
    create_authority,
    issue_device_certificate,
    make_csr,
    make_revocation,
)

pytest_plugins = ["pg"]  # fixtures pg_server, pg_dsn (for the PostgreSQL store)

TPS = f"{VILLAGE}/tps-001"
CERT_FROM = datetime.fromtimestamp(START_MS / 1000, UTC) - timedelta(days=1)
NAMES = ("officer-a", "officer-b", "thief", "phone-r", "phone-p")


class Authority:
    """A root authority with a certificate for every test device."""

    def __init__(self) -> None:
        self.key: AuthorityKey
        self.key, self.pem = create_authority("KPU Uji", CERT_FROM, 3650)
        self.certs = [issue_device_certificate(
            self.key, self.pem, make_csr(device_key(name), name), role="pantarlih",
            scope=VILLAGE, now=CERT_FROM, days=365) for name in NAMES]

    def revoke(self, name: str, after_seq: int | None) -> bytes:
        return make_revocation(self.key, self.pem, device_key(name).public_key, after_seq,
                               START_MS + 1000)


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path
               ) -> Iterator[Callable[[], Store]]:
    made: list[Store] = []
    cleanup: list[Callable[[], None]] = []

    def make() -> Store:
        if request.param == "memory":
            made.append(MemoryStore())
        elif request.param == "sqlite":
            made.append(SQLiteStore(tmp_path / f"store-{len(made)}.sqlite"))
        else:
            pytest.importorskip("psycopg")
            from meshsync.store.postgres import PostgresStore

            server = request.getfixturevalue("pg_server")
            schema = server.new_schema()
            made.append(PostgresStore(server.dsn_for(schema)))
            cleanup.append(lambda: server.drop_schema(schema))
        return made[-1]

    yield make
    for store in made:
        store.close()
    for drop in cleanup:
        drop()


def status_validator(key: str, fields: dict[str, Any], *, partial: bool) -> list[
        tuple[str, str]]:
    return [("status", "unknown status")] if fields.get("status") == "BAD" else []


@pytest.fixture
def make_device(make_store: Callable[[], Store], authority: Authority
                ) -> Callable[..., Device]:
    def make(name: str, *revocations: bytes) -> Device:
        device = Device(name, make_store(), partition=TPS)
        device.node.trust = TrustStore([authority.pem])
        for blob in [*authority.certs, *revocations]:
            device.node.add_credential(blob)
        device.node.register_validator("voters", status_validator)
        return device
    return make


def state(device: Device) -> tuple[object, ...]:
    """What must be equal on converged devices: records byte for byte, and feeds."""
    return device.node.canonical_state(), device.node.version_vector()


def fields(device: Device, key: str) -> dict[str, Any] | None:
    record = device.node.get("voters", key, TPS)
    return None if record is None or record.deleted else dict(record.fields)


def feed(name: str) -> tuple[bytes, str]:
    return (device_key(name).public_key, TPS)


def thief_history(make_device: Callable[..., Device]) -> dict[str, Device]:
    """A, X and B write (X: seqs 1-2 honest, 3-7 after the revocation point 2); R holds
    it all, having learned nothing yet."""
    a, x, b, r = (make_device(n) for n in ("officer-a", "thief", "officer-b", "phone-r"))
    r.put("voters", "v-own", {"nama": "Milik R"})  # R's own feed: never touched
    a.put("voters", "v-1", {"nama": "Asli", "status": "MS"})
    a.put("voters", "v-2", {"nama": "Dua"})
    a.put("voters", "v-3", {"nama": "Tiga"})
    exchange(a, x)
    x.put("voters", "v-x0", {"nama": "Sebelum"})  # X seq 1 and 2: before the point
    x.put("voters", "v-x1", {"nama": "Sebelum juga"})
    x.put("voters", "v-1", {"nama": "Palsu"})  # seq 3: over A's value
    x.put("voters", "v-2", {"nama": "Palsu 2"})  # seq 4: B will edit after seeing it
    x.delete("voters", "v-3")  # seq 5: a delete
    x.put("voters", "v-x2", {"nama": "Hanya pencuri"})  # seq 6: only X wrote it
    x.node.validators.clear()
    x.put("voters", "v-x0", {"status": "BAD"})  # seq 7: invalid wherever validated
    for src in (a, x):
        exchange(src, r)
    exchange(r, b)
    b.put("voters", "v-1", {"status": "TMS"})  # concurrent with X's seq 3 (other field)
    b.put("voters", "v-2", {"nama": "Benar"})  # saw X's seq 4: names it in its pred
    b.node.validators.clear()
    b.put("voters", "v-1", {"status": "BAD"})  # stored invalid on R: never applied
    exchange(b, r)
    return {"a": a, "x": x, "b": b, "r": r}


def reference(make_device: Callable[..., Device], *revocations: bytes,
              sources: list[Device]) -> Device:
    """Phone P, which knew ``revocations`` before anything arrived."""
    p = make_device("phone-p", *revocations)
    p.put("voters", "v-p", {"nama": "Milik P"})
    for src in sources:
        p.receive(all_changes(src))
    return p


def test_learning_the_revocation_quarantines_and_converges(
        make_device: Callable[..., Device], authority: Authority) -> None:
    d = thief_history(make_device)
    r = d["r"]
    assert fields(r, "v-2") == {"nama": "Benar"} and fields(r, "v-3") is None
    revocation = authority.revoke("thief", 2)
    p = reference(make_device, revocation, sources=[d["a"], d["x"], d["b"]])
    own_before = list(r.store.iter_changes(feed("phone-r")))

    assert r.add_credential(revocation) is True

    held = r.store.quarantined()
    assert [(q.author, q.seq) for q in held] == [(feed("thief")[0], s) for s in range(3, 8)]
    x_changes = {c.seq: c for c in all_changes(d["x"]) if c.feed == feed("thief")}
    assert all(q.body == x_changes[q.seq].body and q.sig == x_changes[q.seq].sig
               for q in held)
    logged = [f for f in r.store.refusals()
              if f.author == feed("thief")[0] and f.stage != "validation"]
    assert [(f.seq, f.stage) for f in logged] == [(s, "authorization") for s in range(3, 8)]
    assert all("revoked after seq 2" in f.reason and "quarantined" in f.reason
               for f in logged)
    assert "change seq 3" in logged[0].reason
    # The feed's head is back at 2: not claimed, not offered.
    assert r.version_vector()[feed("thief")] == 2
    assert [c.seq for c in all_changes(r) if c.author == feed("thief")[0]] == [1, 2]
    assert list(r.store.iter_changes(feed("phone-r"))) == own_before
    # What the honest officers wrote survives; X's delete is undone; X's own record goes.
    assert fields(r, "v-1") == {"nama": "Asli", "status": "TMS"}  # invalid BAD not applied
    record = r.get("voters", "v-2", TPS)
    assert record is not None and record.fields == {"nama": "Benar"}  # B's later edit wins
    assert [v.value for v in record.conflicts["nama"]] == ["Benar", "Dua"]  # A's is back
    assert fields(r, "v-3") == {"nama": "Tiga"}
    assert r.get("voters", "v-x2", TPS) is None
    assert fields(r, "v-x0") == {"nama": "Sebelum"}
    assert fields(r, "v-x1") == {"nama": "Sebelum juga"}
    # R now holds, byte for byte, what P holds, whose records never saw X's changes.
    exchange(r, p)
    exchange(p, r)
    assert state(r) == state(p)
    assert all_changes(r) == all_changes(p)


def test_a_quarantined_change_offered_again_is_refused(
        make_device: Callable[..., Device], authority: Authority) -> None:
    d = thief_history(make_device)
    r = d["r"]
    r.add_credential(authority.revoke("thief", 2))
    before = state(r)
    report = r.receive(all_changes(d["b"]))  # B, unaware, offers X's seq 3.. again
    assert report.applied == 0
    assert [(f.seq, f.stage) for f in report.refused if f.author == feed("thief")[0]] == [
        (3, "authorization"), *[(s, "hash chain") for s in range(4, 8)]]
    assert state(r) == before


def test_learning_the_same_revocation_again_changes_nothing(
        make_device: Callable[..., Device], authority: Authority) -> None:
    d = thief_history(make_device)
    r = d["r"]
    revocation = authority.revoke("thief", 2)
    r.add_credential(revocation)
    before = (state(r), r.store.quarantined(), r.store.refusals())
    assert r.add_credential(revocation) is False
    with r.store.transaction():
        assert r.node.quarantine_revoked() == []
    assert (state(r), r.store.quarantined(), r.store.refusals()) == before


def test_a_stricter_second_revocation_quarantines_further(
        make_device: Callable[..., Device], authority: Authority) -> None:
    d = thief_history(make_device)
    r = d["r"]
    first, second = authority.revoke("thief", 2), authority.revoke("thief", 1)
    r.add_credential(first)
    r.add_credential(second)
    assert [q.seq for q in r.store.quarantined()] == [2, 3, 4, 5, 6, 7]
    assert "revoked after seq 1" in r.store.quarantined()[0].reason
    assert r.get("voters", "v-x1", TPS) is None and fields(r, "v-x0") == {"nama": "Sebelum"}
    p = reference(make_device, first, second, sources=[d["a"], d["x"], d["b"]])
    exchange(r, p)
    exchange(p, r)
    assert state(r) == state(p)
    # A revocation of every change forgets the feed: X's seq 1 goes too.
    r.add_credential(authority.revoke("thief", None))
    assert feed("thief") not in r.version_vector()
    assert r.get("voters", "v-x0", TPS) is None
    assert [q.seq for q in r.store.quarantined()] == list(range(1, 8))


def test_a_revocation_in_a_bundle_quarantines_what_came_before(
        make_device: Callable[..., Device], authority: Authority) -> None:
    d = thief_history(make_device)
    r = d["r"]
    revocation = authority.revoke("thief", 2)
    p = reference(make_device, revocation, sources=[d["a"], d["x"], d["b"]])
    out = io.BytesIO()
    export_bundle(p.node, out)  # P's credentials (the revocation) and changes
    report = import_bundle(r.node, out, source="bundle:p")
    assert [q.seq for q in report.quarantined] == [3, 4, 5, 6, 7]
    assert report.to_json()["quarantined"][0]["author"] == device_id(feed("thief")[0])
    assert report.apply.refused == [] and report.credentials_new == 1
    assert {f.source for f in r.store.refusals() if "quarantined" in f.reason} == {"bundle:p"}
    exchange(r, p)
    assert state(r) == state(p)


def test_own_changes_are_quarantined_only_when_the_own_key_is_revoked(
        make_device: Callable[..., Device], authority: Authority) -> None:
    r = make_device("phone-r")
    for i in range(4):
        r.put("voters", f"v-{i}", {"nama": f"Nama {i}"})
    r.add_credential(authority.revoke("thief", 0))  # another device: nothing here
    assert r.store.quarantined() == [] and r.version_vector()[feed("phone-r")] == 4
    r.add_credential(authority.revoke("phone-r", 2))  # this device's own key (same rule)
    assert [q.seq for q in r.store.quarantined()] == [3, 4]
    assert r.version_vector()[feed("phone-r")] == 2
    assert [rec.key for rec in r.records("voters")] == ["v-0", "v-1"]


# -- end to end: the real command ------------------------------------------------------


def test_b14_thief_changes_quarantined_through_the_cli(tmp_path: Path) -> None:
    kpu = tmp_path / "kpu"
    cli("authority", "init", "--home", str(kpu), "--name", "KPU Uji")
    laptop = enrolled(tmp_path, "laptop", kpu, "gateway", "mimika/jila", "mimika/jila")
    p1 = enrolled(tmp_path, "p1", kpu, "pantarlih", TPS1)
    c = enrolled(tmp_path, "c", kpu, "pantarlih", VILLAGE, f"{VILLAGE}/tps-002")
    p1_id = Home.open(p1).load_key().device_id
    cli("put", "--home", str(p1), "voters", "v-0", "nama=Asli")
    cli("put", "--home", str(p1), "voters", "v-1", "nama=Satu")
    # The phone is stolen: the thief writes seq 3 and 4; phone C takes them.
    cli("put", "--home", str(p1), "voters", "v-0", "nama=Palsu")
    cli("delete", "--home", str(p1), "voters", "v-1")
    assert import_json(c, export(p1, "p1.bundle"))["applied"] == 4
    assert keys_in(c) == ["v-0"]
    # KPU revokes the phone after seq 2; the revocation reaches C through the laptop.
    cli("authority", "revoke", "--home", str(kpu), p1_id, "--after-seq", "2")
    import_json(laptop, export(kpu, "kpu.bundle"))
    report = import_json(c, export(laptop, "laptop.bundle"))
    assert [(q["seq"], q["stage"]) for q in report["quarantined"]] == [
        (3, "authorization"), (4, "authorization")]
    assert report["refused"] == []
    assert keys_in(c) == ["v-0", "v-1"]
    assert cli("get", "--home", str(c), "voters", "v-0", "--json")["fields"] == {"nama": "Asli"}

    log = cli("log", "--home", str(c), "--json")
    assert {(f["author"], f["seq"]) for f in log["feeds"] if f["author"] == p1_id} == {
        (p1_id, 2)}
    (q3, q4) = log["quarantined"]
    assert (q3["author"], q3["partition"], q3["seq"]) == (p1_id, TPS1, 3)
    assert q3["ops"] == [{"op": "put", "collection": "voters", "key": "v-0",
                          "fields": {"nama": "Palsu"}}]
    assert q4["ops"] == [{"op": "delete", "collection": "voters", "key": "v-1"}]
    assert "revoked after seq 2 (change seq 3)" in q3["reason"] and "quarantined" in q3["reason"]
    text = cli("log", "--home", str(c)).output
    assert "quarantined changes: 2" in text and "seq 4: delete voters/v-1" in text
    # C and the laptop now hold the same: C's bundle brings nothing the laptop refuses.
    again = import_json(laptop, export(c, "c.bundle"))
    assert again["refused"] == [] and again["quarantined"] == []
    assert keys_in(laptop) == keys_in(c)
