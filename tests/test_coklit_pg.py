"""Central's SQL view of coklit visits (``meshsync_coklit_progress``) and the coklit
queries of docs/central-sql.md, on a real PostgreSQL. All people are made up."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import START_MS, Device, exchange
from meshsync.coklit.dpt_csv import import_csv
from meshsync.coklit.schema import register

from meshsync.replica.progress import progress

pytest_plugins = ["pg"]  # fixtures pg_server, pg_dsn

try:
    import psycopg
except ImportError:
    if os.environ.get("MESHSYNC_TEST_PG_REQUIRED") == "1":
        raise
    pytest.skip("psycopg is not installed (pip install -e '.[central]')",
                allow_module_level=True)

from meshsync.store.postgres import PostgresStore  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "central-sql.md"
P1, P2 = "mimika/jila/diloa/tps-001", "mimika/jila/diloa/tps-002"


def sql(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query.encode()).fetchall()


def doc_query(name: str) -> str:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    return next(b for b in blocks if b.startswith(f"-- query: {name}\n"))


def test_central_sql_view_counts_visits_like_every_node(pg_dsn: str, tmp_path: Path,
                                                        make_device: Any) -> None:
    from meshsync.coklit.dpt_csv import write_csv
    from meshsync.coklit.sample import generate

    path = tmp_path / "dpt.csv"
    voters = [v for v in generate(7, "Jila", voters_per_tps=5, tps_per_kampung=2)
              if v.partition in (P1, P2)]
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(out, ((v.partition, v.key, v.fields) for v in voters))
    store = PostgresStore(pg_dsn)
    central = Device("central", store)
    phone = make_device("phone-a", kind="sqlite", partition=P1, now_ms=START_MS + 60_000)
    register(central.node)
    register(phone.node)
    report = import_csv(central.node, path)
    assert report.new == len(voters) and report.bad == []
    exchange(central, phone)
    tps1 = sorted(r.key for r in phone.records("voters", P1))
    phone.put("voters", tps1[0], {"coklit": "MS"}, P1)
    phone.put("voters", tps1[1], {"coklit": "TMS", "tms": "meninggal"}, P1)
    phone.put("voters", tps1[2], {"coklit": "ubah", "alamat": "Jalan Contoh 7"}, P1)
    exchange(phone, central)
    central.put("voters", sorted(r.key for r in central.records("voters", P2))[0],
                {"status": "baru"}, P2)  # an old app's way: status, not coklit

    n1, n2 = (sum(v.partition == p for v in voters) for p in (P1, P2))
    rows = {r[0]: r[1:] for r in sql(pg_dsn, "SELECT prefix, up, voters, dicoklit, belum, "
                                             "ms, tms, ubah, baru FROM meshsync_coklit_progress")}
    assert rows[P1] == (0, n1, 3, n1 - 3, 1, 1, 1, 0)
    assert rows[P2] == (0, n2, 1, n2 - 1, 0, 0, 0, 1)
    assert rows["mimika/jila/diloa"] == (1, n1 + n2, 4, n1 + n2 - 4, 1, 1, 1, 1)
    node = progress(store)
    assert node["village"]["mimika/jila/diloa"]["done"] == 4
    assert node["tps"][P1]["status"] == {"MS": 1, "TMS": 1, "ubah": 1,
                                         "belum dicoklit": n1 - 3}

    [distrik] = sql(pg_dsn, doc_query("coklit-per-distrik"))
    assert distrik[:8] == ("mimika/jila", 4, n1 + n2, 1, 1, 1, 1, n1 + n2 - 4)
    assert distrik[8] is not None
    assert sql(pg_dsn, doc_query("coklit-tps-not-started")) == []
    changed = sql(pg_dsn, doc_query("coklit-changed-address"))
    assert changed == [(P1, tps1[2], phone.get("voters", tps1[2]).fields["dpt"]["alamat"],
                        "Jalan Contoh 7")]
    store.close()
