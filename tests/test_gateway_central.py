"""Gateway and central as real processes: PostgreSQL at central, mutual TLS, issue 6.

Every node is a real ``meshsync daemon`` on 127.0.0.1 with ``discovery = ["static"]``
(the default cascade would send multicast and broadcast and dial the host's default
gateway on the real network) and its own ports in its ``config.toml`` (0: the kernel
picks a free one, recorded in ``daemon.json``; a fixed free port only where a gateway
must be told central's address before central runs). Central runs with
``--role central --store DSN`` on a fresh PostgreSQL schema (tests/pg.py) and every
check at central is SQL on the documented views and tables (docs/central-sql.md).

1. Phones -> gateway with the uplink down -> central starts -> central holds every
   record, and every phone shows its feeds safe at central (central's receipt went
   down through the gateway).
2. A large sync over an uplink cut and restored 20 times: exact counts at central,
   no change twice, bytes bounded by what each cut can have had in flight (B11).
3. Two central processes on one database, ingesting from two gateways at once; then
   each gateway syncs with the other central: nothing lost, nothing twice.
4. The baseline imported at central (``coklit import --store``) reaches the phones
   of each TPS through the gateway and the mesh (one phone only through another).
5. Sneakernet: a bundle from a gateway that never had an uplink imports at central
   (``bundle import --store``) twice, then the same data arrives by sync: no duplicate.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import msgpack
import psycopg
import pytest
from daemonfixtures import DaemonLab, DaemonProcess
from netfixtures import (
    LOOPBACK,
    District,
    Relay,
    append_changes,
    count_changes,
    run,
    run_json,
    wait_until,
)

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.change import canonical_put
from meshsync.protocol import frames as fr
from meshsync.protocol.session import SessionConfig
from meshsync.protocol.wire import WireEncoder
from meshsync.trust.profile import parse_blob

pytest_plugins = ["pg"]

JILA, AGIMUGA = "mimika/jila", "mimika/agimuga"
#: name -> (role, certificate scope, default partition)
HOMES = {
    "central": ("central", "", "mimika"),
    "central-2": ("central", "", "mimika"),
    "gw-jila": ("gateway", JILA, JILA),
    "gw-agimuga": ("gateway", AGIMUGA, AGIMUGA),
    "phone-1": ("pantarlih", f"{JILA}/diloa", f"{JILA}/diloa/tps-001"),
    "phone-2": ("pantarlih", f"{JILA}/jila", f"{JILA}/jila/tps-001"),
    "phone-3": ("pantarlih", f"{AGIMUGA}/amar", f"{AGIMUGA}/amar/tps-001"),
}
#: Quick retries so a restored uplink is used within a second; anti-entropy of one
#: second so that phones fetch the gateway's new receipts soon.
FAST = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "anti_entropy_s": 1.0}


# -- daemons ------------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on now (for central, whose address a gateway must know
    before central starts)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class Lab(DaemonLab):
    """This test's copy of the enrolled homes and the daemons it started."""

    def daemon(self, name: str, *, listen: int = 0, peers: tuple[str, ...] = (),
               uplink: tuple[str, ...] = (), store: str | None = None,
               role: str | None = None, **settings: Any) -> DaemonProcess:
        """A daemon on home ``name`` (configured, not started): its settings (mesh
        "mimika", :data:`FAST` retries, ``settings``) written to the home's
        ``config.toml``, run with ``--store``/``--role`` when given; 20 s to stop."""
        return self.add(DaemonProcess(
            self.home(name), self.logs / f"{name}-{len(self.daemons)}.log",
            {"mesh": "mimika", "listen": f"{LOOPBACK}:{listen}", **FAST, **settings,
             "static_peers": list(peers), "uplink": list(uplink)},
            args=[*(["--store", store] if store else []), *(["--role", role] if role else [])],
            stop_timeout=20))

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``check`` at API pace; on timeout, fail with every daemon's log tail."""
        try:
            return wait_until(check, timeout, what, interval=0.1)
        except AssertionError as exc:
            tails = "\n".join(f"--- {d.name}:\n{d.log()[-1500:]}" for d in self.daemons)
            raise AssertionError(f"{exc}\n{tails}") from None


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrol once: an authority, two centrals, two district gateways, three phones."""
    root = tmp_path_factory.mktemp("kpu")
    district = District(root)
    for name, (role, scope, partition) in HOMES.items():
        district.enrol(name, role, scope, partition)
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path) -> Iterator[Lab]:
    with Lab.copy_of(template, tmp_path, "kpu") as the_lab:
        yield the_lab


# -- an uplink the test can cut -------------------------------------------------------------


class Uplink(Relay):
    """A TCP relay on 127.0.0.1 from a gateway to central (``"HOST:PORT"``), counting
    connections and bytes each way (TLS records included: what the modem would carry).

    ``cut()`` resets every relayed connection and refuses new ones (accepts and resets
    at once, as a dead route looks to TLS) until ``restore()``; ``since_cut`` counts
    the bytes to central since the last cut.
    """

    def __init__(self, target: str) -> None:
        super().__init__(target, reset=True)

    @property
    def to_central(self) -> int:
        return self.to_server

    @property
    def to_gateway(self) -> int:
        return self.to_client

    def close(self, timeout: float = 10) -> None:
        """Cut everything, stop listening, wait for the relay threads."""
        self.cut()
        super().close(timeout)


# -- central's database --------------------------------------------------------------------


class Central:
    """SQL on central's database (the test's schema), autocommit, read-only use."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with closing(psycopg.connect(self.dsn, autocommit=True)) as conn:
            return conn.execute(query.encode(), args).fetchall()

    def one(self, query: str, *args: Any) -> Any:
        return self.rows(query, *args)[0][0]

    def changes(self) -> int:
        """Changes held (0 before the store's first start created the tables)."""
        try:
            return int(self.one("SELECT count(*) FROM meshsync_changes"))
        except psycopg.errors.UndefinedTable:
            return 0

    def integrity(self) -> dict[str, int]:
        """Counts that must agree when nothing is lost or held twice."""
        row = self.rows("""
            SELECT (SELECT count(*) FROM meshsync_changes),
                   (SELECT count(DISTINCT (feed, seq)) FROM meshsync_changes),
                   (SELECT count(DISTINCT hash) FROM meshsync_changes),
                   (SELECT coalesce(sum(head_seq), 0) FROM meshsync_feeds),
                   (SELECT count(*) FROM meshsync_records_current),
                   (SELECT count(DISTINCT (partition, collection, key))
                      FROM meshsync_records_current)""")[0]
        keys = ("changes", "distinct_feed_seq", "distinct_hash", "sum_head_seq", "records",
                "distinct_records")
        return dict(zip(keys, map(int, row), strict=True))

    def assert_exact(self, changes: int, records: int) -> None:
        """Every change once, feeds without gaps, every record once."""
        got = self.integrity()
        assert got == {"changes": changes, "distinct_feed_seq": changes,
                       "distinct_hash": changes, "sum_head_seq": changes,
                       "records": records, "distinct_records": records}, got
        gaps = self.rows("""SELECT f.partition, f.head_seq, count(c.seq), max(c.seq)
                            FROM meshsync_feeds f JOIN meshsync_changes c ON c.feed = f.id
                            GROUP BY f.id HAVING count(c.seq) <> f.head_seq
                                              OR max(c.seq) <> f.head_seq""")
        assert gaps == [], gaps


# -- data ----------------------------------------------------------------------------------


def add_credentials_of(store_home: Path, author_home: Path) -> None:
    """Store ``author_home``'s certificate chain in ``store_home``'s store, as a sync
    with that device would have (so they travel on with its changes)."""
    chain = (author_home / "device.crt").read_bytes()
    with open_node(store_home) as node:
        for info in parse_blob(chain):
            if not info.is_root:
                node.add_credential(info.der)


def visit(n: int) -> dict[str, Any]:
    """The made-up fields of coklit visit ``n`` (about the size of a voter record:
    docs/architecture.md §11); nobody real, numbers only shaped like NIK and KK."""
    return {"nama": f"Warga Contoh {n}", "nik": f"9109{n:012d}", "nkk": f"9109{n // 4:012d}",
            "tempat_lahir": "Timika", "tanggal_lahir": f"{1950 + n % 50}-0{1 + n % 9}-1{n % 10}",
            "jenis_kelamin": "LP"[n % 2], "alamat": f"Kampung Contoh, rumah {n}", "rt": n % 7,
            "rw": n % 3, "status": "MS", "disabilitas": None, "rumah": n,
            "catatan": f"kunjungan ke-{n}: dicocokkan dengan KK, tidak ada perubahan data"}


def write_feed(store_home: Path, author_home: Path, partition: str, count: int,
               collection: str = "kunjungan") -> None:
    """Append ``count`` one-record changes signed by ``author_home``'s device in
    ``partition`` to ``store_home``'s store, in one transaction (as if the gateway had
    received them from that phone; about 10,000 a second). Keys ``k-0000001``..."""
    add_credentials_of(store_home, author_home)
    append_changes(store_home, count,
                   lambda seq: canonical_put(collection, f"k-{seq:07d}", visit(seq), ()),
                   author=Home.open(author_home).load_key(), partition=partition)


def wire_bytes(home: Path) -> int:
    """Bytes of the change items a full sync of ``home``'s changes puts in frames."""
    encoder = WireEncoder()
    with open_node(home) as node:
        return sum(len(msgpack.packb(item, use_bin_type=True))
                   for change in node.changes_since({}) for item in encoder.encode(change))


# -- 1. phones -> gateway (uplink down) -> central starts ---------------------------------


def test_central_started_late_holds_everything_and_phones_see_receipts(
        lab: Lab, pg_dsn: str) -> None:
    central_port = free_port()
    gateway = lab.daemon("gw-jila", uplink=(f"{LOOPBACK}:{central_port}",)).start()
    phones = [lab.daemon(name, peers=(gateway.address,)).start()
              for name in ("phone-1", "phone-2")]
    lab.wait(lambda: (gateway.status()["uplink"] or {}).get("last_error"), 15,
             "the gateway to try its uplink")
    uplink = gateway.status()["uplink"]
    assert uplink["state"] == "down" and uplink["targets"] == [f"{LOOPBACK}:{central_port}"]

    written: dict[tuple[str, str], dict[str, Any]] = {}
    for phone in phones:
        partition = HOMES[phone.name][2]
        for i in range(1, 13):  # keys differ: a put of a key held elsewhere edits that record
            key = f"{phone.name}-{i:03d}"
            fields = {"nama": f"Warga Contoh {i}", "status": "MS", "rumah": i}
            phone.put("kunjungan", key, fields)
            written[(partition, key)] = fields

    def custody(phone: DaemonProcess) -> list[dict[str, Any]]:
        return phone.status()["custody"]["feeds"]  # type: ignore[no-any-return]
    # The gateway holds everything and says so; central does not exist yet.
    for phone in phones:
        lab.wait(lambda p=phone: all(f["gateway"] == f["local"] for f in custody(p)), 30,
                 f"the gateway's receipt on {phone.name}")
        assert [f["safe_at_central"] for f in custody(phone)] == [False]
        assert custody(phone)[0]["central"] == 0
    assert gateway.status()["uplink"]["state"] == "down"

    db = Central(pg_dsn)
    assert db.changes() == 0
    central = lab.daemon("central", listen=central_port, store=pg_dsn, role="central").start()

    def central_records() -> dict[tuple[str, str], dict[str, Any]]:
        rows = db.rows("SELECT partition, key, fields, deleted FROM meshsync_records_current "
                       "WHERE collection = 'kunjungan'")
        return {(p, k): f for p, k, f, deleted in rows if not deleted}
    lab.wait(lambda: db.changes() and central_records() == written, 30,
             "central's SQL to hold every record")
    db.assert_exact(changes=len(written), records=len(written))
    progress = dict(db.rows("SELECT prefix, records FROM meshsync_progress "
                            "WHERE collection = 'kunjungan' AND up = 0"))
    assert progress == {HOMES["phone-1"][2]: 12, HOMES["phone-2"][2]: 12}

    # Central's receipt travels central -> gateway -> phones.
    for phone in phones:
        lab.wait(lambda p=phone: all(f["safe_at_central"] for f in custody(p)), 30,
                 f"central's receipt on {phone.name}")
        feeds = custody(phone)
        assert [(f["partition"], f["local"], f["gateway"], f["central"]) for f in feeds] == \
            [(HOMES[phone.name][2], 12, 12, 12)]
        roles = {r["issuer"]: r["role"] for r in phone.status()["custody"]["receipts"]}
        assert roles.get(central.device_id) == "central", roles
    # What the officer's `meshsync status` shows (from the running daemon).
    shown = run_json("status", "--home", lab.home("phone-1"))["custody"]["feeds"]
    assert [(f["local"], f["safe_at_central"]) for f in shown] == [(12, True)]
    assert gateway.status()["uplink"]["state"] == "up"
    for daemon in (*phones, gateway, central):
        assert daemon.stop() == 0


# -- 2. a large sync over an uplink cut and restored 20 times ------------------------------

CUTS = 20
#: (author, partition) -> changes the gateway holds before its uplink first works
BIG_FEEDS = {("phone-1", f"{JILA}/diloa/tps-001"): 8_000,
             ("phone-1", f"{JILA}/diloa/tps-002"): 8_000,
             ("phone-2", f"{JILA}/jila/tps-001"): 7_000,
             ("phone-2", f"{JILA}/jila/tps-002"): 7_000}


@pytest.mark.slow
def test_uplink_cut_20_times_during_a_large_sync_loses_and_duplicates_nothing(
        lab: Lab, pg_dsn: str) -> None:
    gw_home = lab.home("gw-jila")
    for (author, partition), count in BIG_FEEDS.items():
        write_feed(gw_home, lab.home(author), partition, count)
    total = sum(BIG_FEEDS.values())
    # The cuts are placed by the payload's bytes: frames uncompressed (compressed, the
    # whole sync would pass before the fourth cut).
    config = Home(gw_home)
    config.write_config({**config.config(), "compress": False})
    payload = wire_bytes(gw_home)
    db = Central(pg_dsn)
    central = lab.daemon("central", store=pg_dsn, role="central").start()
    uplink = Uplink(central.address)
    lab.closers.append(uplink.close)
    # The 20 cuts fall inside the sync: at most half the payload passes before the last
    # (a session loses little at a cut: the receiver reads ahead and commits as it goes).
    chunk = payload // (2 * CUTS)
    started = time.monotonic()
    gateway = lab.daemon("gw-jila", uplink=(uplink.address,)).start()

    held_at_cut = []
    for cut in range(CUTS):
        uplink.cut_after = chunk  # the relay cuts by itself once `chunk` bytes passed
        lab.wait(lambda c=cut: uplink.cuts > c, 60, f"{chunk} bytes before cut {cut + 1}")
        held_at_cut.append(db.changes())
        refused = uplink.refused
        lab.wait(lambda r=refused: uplink.refused > r, 30,
                 f"the gateway to find the uplink down after cut {cut + 1}")
        uplink.restore()
    last_cut = time.monotonic()
    lab.wait(lambda: db.changes() >= total, 120, "central to hold every change")
    tail = time.monotonic() - last_cut
    lab.wait(lambda: gateway.status()["uplink"]["state"] == "up", 30,
             "the gateway to finish a session")
    elapsed = time.monotonic() - started

    # Every cut fell inside the sync, and sessions went on from the one before: a
    # sender may have at most `window` frames unacknowledged, so of the `chunk` bytes a
    # session carries at least chunk - window are applied. A restart from zero would
    # stall at the first chunk's changes.
    assert all(held < total for held in held_at_cut), held_at_cut
    assert held_at_cut[-1] >= total // 4, held_at_cut
    assert gateway.status()["changes"] == total  # central holds exactly the gateway's
    db.assert_exact(changes=total, records=total)
    per_feed = db.rows("SELECT partition, head_seq FROM meshsync_feeds ORDER BY partition")
    assert per_feed == sorted((p, n) for (_, p), n in BIG_FEEDS.items())
    last = db.rows("SELECT fields FROM meshsync_records_current "
                   "WHERE partition = %s AND key = %s", f"{JILA}/jila/tps-002", "k-0007000")
    assert last == [(visit(7000),)]
    # B11: each cut costs at most what was in flight (the window of unacknowledged
    # frames), never a restart from zero; each new connection adds its handshake.
    in_flight = SessionConfig().window * (fr.FRAME_TARGET_BYTES + 1024)
    per_connection = 16 * 1024
    bound = payload + CUTS * in_flight + len(uplink.connections) * per_connection
    assert uplink.to_central <= bound, (uplink.to_central, bound)
    row = gateway.peer(central)
    assert row is not None and row["sessions_ok"] >= 1
    print(f"\n{total} changes ({payload} payload bytes) through {CUTS} cuts in "
          f"{elapsed:.1f} s: {len(uplink.connections)} sessions reached central "
          f"({uplink.refused} refused while down), {uplink.to_central} bytes to central "
          f"({uplink.to_central / payload:.3f} x payload), {uplink.to_gateway} back; "
          f"central held {held_at_cut} at the cuts; the last {total - held_at_cut[-1]} "
          f"changes took {tail:.1f} s after the last cut")
    for daemon in (gateway, central):
        assert daemon.stop() == 0


# -- 3. two central processes on one database, two gateways at once ------------------------

#: gateway -> {(author, partition): changes}, before and after the first ingest
DISTRICT_FEEDS = {
    "gw-jila": {("phone-1", f"{JILA}/diloa/tps-001"): 2_500,
                ("phone-2", f"{JILA}/jila/tps-001"): 2_500},
    "gw-agimuga": {("phone-3", f"{AGIMUGA}/amar/tps-001"): 2_500,
                   ("phone-3", f"{AGIMUGA}/amar/tps-002"): 2_500},
}
LATER = 300  # changes per feed written after the first ingest


def as_url(dsn: str) -> str:
    """The same connection as a ``postgresql://`` URL (the pg fixture gives libpq's
    keyword/value form; ``--store`` takes both)."""
    from urllib.parse import urlencode

    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return f"postgresql:///?{urlencode(params)}"


def district_counts(db: Central) -> tuple[int, int]:
    """Changes central holds of Jila and of Agimuga."""
    row = db.rows("""SELECT count(*) FILTER (WHERE starts_with(f.partition, %s)),
                            count(*) FILTER (WHERE starts_with(f.partition, %s))
                     FROM meshsync_changes c JOIN meshsync_feeds f ON f.id = c.feed""",
                  f"{JILA}/", f"{AGIMUGA}/")[0]
    return int(row[0]), int(row[1])


@pytest.mark.slow
def test_two_centrals_on_one_database_ingest_two_gateways_at_once(
        lab: Lab, pg_dsn: str) -> None:
    for gw, feeds in DISTRICT_FEEDS.items():
        for (author, partition), count in feeds.items():
            write_feed(lab.home(gw), lab.home(author), partition, count)
    per_district = [sum(DISTRICT_FEEDS[gw].values()) for gw in ("gw-jila", "gw-agimuga")]
    db = Central(pg_dsn)
    # Both centrals start together (schema migrations under PostgreSQL's advisory lock),
    # on one database named in libpq's two forms.
    centrals = [lab.daemon("central", store=pg_dsn, role="central"),
                lab.daemon("central-2", store=as_url(pg_dsn), role="central")]
    starting = [threading.Thread(target=c.start) for c in centrals]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()
    assert all(c.runtime for c in centrals), [c.log()[-2000:] for c in centrals]
    uplinks = [Uplink(c.address) for c in centrals]
    for uplink in uplinks:
        lab.closers.append(uplink.close)
        uplink.cut()  # no uplink until both gateways run
    gateways = [lab.daemon(gw, uplink=(u.address,)).start()
                for gw, u in zip(("gw-jila", "gw-agimuga"), uplinks, strict=True)]
    lab.wait(lambda: all(u.refused for u in uplinks), 15, "both gateways to try their uplink")

    both_partial = False
    for uplink in uplinks:
        uplink.restore()

    def ingested() -> bool:
        nonlocal both_partial
        jila, agimuga = district_counts(db) if db.changes() else (0, 0)
        both_partial |= 0 < jila < per_district[0] and 0 < agimuga < per_district[1]
        return (jila, agimuga) == tuple(per_district)
    lab.wait(ingested, 90, "both districts at central")
    assert both_partial, "the two ingests never overlapped"
    total = sum(per_district)
    db.assert_exact(changes=total, records=total)
    for gateway, central in zip(gateways, centrals, strict=True):
        lab.wait(lambda g=gateway, c=central: g.synced_with(c), 30,
                 f"{gateway.name} to finish with {central.name}")

    # Later: more changes, and each gateway syncs with both centrals at once, so the
    # same new changes reach the database through two processes (a race on one feed).
    for gateway in gateways:
        assert gateway.stop() == 0
    for gw, feeds in DISTRICT_FEEDS.items():
        for (author, partition) in feeds:
            write_feed(lab.home(gw), lab.home(author), partition, LATER)
    later = [lab.daemon(gw, uplink=(other.address, own.address)).start()
             for gw, own, other in (("gw-jila", *uplinks), ("gw-agimuga", *uplinks[::-1]))]
    grown = [n + LATER * len(DISTRICT_FEEDS[gw]) for n, gw in zip(
        per_district, ("gw-jila", "gw-agimuga"), strict=True)]
    lab.wait(lambda: district_counts(db) == tuple(grown), 60, "the later changes at central")
    for gateway in later:
        for central in centrals:
            lab.wait(lambda g=gateway, c=central: g.synced_with(c), 30,
                     f"{gateway.name} to finish with {central.name}")
    db.assert_exact(changes=sum(grown), records=sum(grown))
    # Each gateway holds its own district only (central serves a gateway its district)
    # and a central's receipt over it. (The centrals share one receipt store, so a
    # session with the second central may find nothing new and issue none.)
    ids = {c.device_id for c in centrals}
    for gateway, expected, gw in zip(later, grown, DISTRICT_FEEDS, strict=True):
        status = gateway.status()
        assert status["changes"] == expected
        scope = HOMES[gw][1]
        assert any(r["issuer"] in ids and r["role"] == "central" and r["scope"] == scope
                   and r["feeds"] == len(DISTRICT_FEEDS[gw])
                   for r in status["custody"]["receipts"]), status["custody"]["receipts"]
    sent = {g.name: [g.peer(c)["changes_sent"] for c in centrals] for g in later}  # type: ignore[index]
    print(f"\nper district {per_district} then {grown}; later changes sent to "
          f"(central, central-2): {sent}; bytes to the centrals: "
          f"{[u.to_central for u in uplinks]}")
    for daemon in (*later, *centrals):
        assert daemon.stop() == 0


# -- 4. the baseline goes down: central -> gateway -> mesh -> phones -------------------------


def import_dpt(lab: Lab, dsn: str, distrik: str, seed: int) -> int:
    """Generate a made-up DPT for ``distrik`` and import it at central's PostgreSQL
    store with the CLI; returns the number of voters."""
    csv = lab.district.root / f"dpt-{distrik.lower()}.csv"
    run("coklit", "generate", "--seed", seed, "--distrik", distrik, "--voters-per-tps", 12,
        "--tps-per-kampung", 1, "-o", csv)
    report = run_json("coklit", "import", csv, "--home", lab.home("central"), "--store", dsn)
    assert report["bad"] == [] and report["imported"] > 0, report
    return int(report["imported"])


def test_baseline_at_central_reaches_the_phones_of_each_tps(lab: Lab, pg_dsn: str) -> None:
    jila = import_dpt(lab, pg_dsn, "Jila", 2024)
    agimuga = import_dpt(lab, pg_dsn, "Agimuga", 2025)
    db = Central(pg_dsn)
    baseline = {(p, k): f for p, k, f in db.rows(
        "SELECT partition, key, fields FROM meshsync_records_current WHERE collection = 'voters'")}
    assert len(baseline) == jila + agimuga
    assert db.integrity()["records"] == jila + agimuga
    assert count_changes(lab.home("central")) == 0  # all in PostgreSQL, none in SQLite

    central = lab.daemon("central", store=pg_dsn, role="central").start()
    gateway = lab.daemon("gw-jila", uplink=(central.address,)).start()
    phone1 = lab.daemon("phone-1", peers=(gateway.address,)).start()
    # phone-2 is out of the laptop's reach: only phone-1 carries the district to it
    phone2 = lab.daemon("phone-2", peers=(phone1.address,)).start()

    def voters(daemon: DaemonProcess, prefix: str = "") -> dict[tuple[str, str], Any]:
        query = f"?partition={prefix}" if prefix else ""
        return {(r["partition"], r["key"]): r["fields"]
                for r in daemon.listing(f"/api/records/voters{query}")}
    expected = {pk: f for pk, f in baseline.items() if pk[0].startswith(f"{JILA}/")}
    assert len(expected) == jila
    for daemon in (gateway, phone1, phone2):
        lab.wait(lambda d=daemon: voters(d) == expected, 60,
                 f"the Jila baseline on {daemon.name}")
    for phone in (phone1, phone2):
        tps = HOMES[phone.name][2]
        own = voters(phone, tps)
        assert own and own == {pk: f for pk, f in baseline.items() if pk[0] == tps}
    assert phone2.peer(gateway) is None  # it never met the laptop
    jila_changes = int(db.one("SELECT sum(head_seq) FROM meshsync_feeds "
                              "WHERE starts_with(partition, %s)", f"{JILA}/"))
    lab.wait(lambda: gateway.status()["changes"] == jila_changes, 10,
             "the gateway's status to count the district's changes and no others")
    for daemon in (phone2, phone1, gateway, central):
        assert daemon.stop() == 0


# -- 5. sneakernet to central ---------------------------------------------------------------

SNEAKER_FEEDS = {("phone-1", f"{JILA}/diloa/tps-001"): 1_500,
                 ("phone-2", f"{JILA}/jila/tps-001"): 1_500}


def test_bundle_from_a_gateway_without_uplink_imports_at_central_once(
        lab: Lab, pg_dsn: str) -> None:
    gw_home = lab.home("gw-jila")
    for (author, partition), count in SNEAKER_FEEDS.items():
        write_feed(gw_home, lab.home(author), partition, count)
    carried = sum(SNEAKER_FEEDS.values())
    bundle = lab.district.root / "jila.bundle"
    exported = run_json("bundle", "export", "--clear", "--home", gw_home, "-o", bundle)
    assert exported["changes"] == carried

    db = Central(pg_dsn)
    central = lab.home("central")
    first = run_json("bundle", "import", bundle, "--home", central, "--store", pg_dsn)
    assert (first["applied"], first["duplicates"], first["refused"], first["invalid"]) == \
        (carried, 0, [], [])
    db.assert_exact(changes=carried, records=carried)
    again = run_json("bundle", "import", bundle, "--home", central, "--store", pg_dsn)
    assert (again["applied"], again["duplicates"]) == (0, carried)
    db.assert_exact(changes=carried, records=carried)
    assert count_changes(central) == 0  # nothing went to the home's SQLite file

    # The officers went on working; then the uplink appears: the same changes arrive
    # by sync too, and only what the bundle did not carry crosses the uplink.
    for (author, partition) in SNEAKER_FEEDS:
        write_feed(gw_home, lab.home(author), partition, 200)
    total = carried + 200 * len(SNEAKER_FEEDS)
    server = lab.daemon("central", store=pg_dsn, role="central").start()
    gateway = lab.daemon("gw-jila", uplink=(server.address,)).start()
    lab.wait(lambda: gateway.synced_with(server), 30, "the gateway's first uplink session")
    db.assert_exact(changes=total, records=total)
    row = gateway.peer(server)
    assert row is not None and (row["changes_sent"], row["changes_received"]) == \
        (total - carried, 0)
    record = db.rows("SELECT fields FROM meshsync_records_current WHERE partition = %s "
                     "AND key = %s", f"{JILA}/diloa/tps-001", "k-0001700")
    assert record == [(visit(1700),)]
    for daemon in (gateway, server):
        assert daemon.stop() == 0
