"""The local API's listings are paged by cursor, in the store (issue 15, item 4).

A real ``meshsync daemon`` on 127.0.0.1 (the fixtures of ``test_daemon.py``) holding
5,000 voters: walking ``GET /api/records/voters`` 500 at a time lists each once, none
missing, also while records are written meanwhile (those after the cursor appear,
those before it do not); bad ``limit`` and ``after`` values are 400 naming them.
"""

from __future__ import annotations

from pathlib import Path

import test_daemon
from netfixtures import VILLAGE
from test_daemon import Lab

from meshsync.host.local import open_node

template = test_daemon.template
lab = test_daemon.lab

TPS = f"{VILLAGE}/tps-001"
VOTERS = 5000


def _fill(home: Path, count: int, batch: int = 500) -> list[str]:
    """Write ``count`` voters into ``home`` through the library, ``batch`` per change;
    their keys."""
    keys = [f"v-{n:05d}" for n in range(count)]
    with open_node(home) as node:
        for start in range(0, count, batch):
            node.write(TPS, [("put", "voters", k, {"nama": f"Contoh {k}", "umur": 30})
                             for k in keys[start:start + batch]])
    return keys


def test_walking_every_page_lists_each_record_once_while_writes_go_on(lab: Lab) -> None:
    keys = _fill(lab.home("phone-a"), VOTERS)
    daemon = lab.daemon("phone-a").start()
    seen: list[str] = []
    pages, cursor = 0, None
    while True:
        page = daemon.get("/api/records/voters?limit=500"
                          + (f"&after={cursor}" if cursor else ""))
        assert len(page["records"]) <= 500
        seen += [r["key"] for r in page["records"]]
        pages += 1
        if pages == 3:  # meanwhile: one record behind the cursor, one ahead of it
            daemon.put("voters", "v-00000a", {"nama": "Di belakang"}, TPS)
            daemon.put("voters", "v-99999", {"nama": "Di depan"}, TPS)
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a record was listed twice"
    assert seen == sorted(seen)
    assert set(seen) == {*keys, "v-99999"}, "a record is missing, or one behind the cursor"
    assert pages == VOTERS // 500 + 1
    everything = daemon.listing("/api/records/voters", limit=5000)
    assert {r["key"] for r in everything} == {*keys, "v-00000a", "v-99999"}


def test_bad_limit_and_cursor_are_400_naming_them(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    for n in range(3):
        daemon.put("voters", f"v-{n}", {"nama": "Contoh"}, TPS)
    for query, field in (("limit=0", "limit"), ("limit=5001", "limit"),
                         ("limit=abc", "limit"), ("limit=-1", "limit"),
                         ("after=bm90IGEgY3Vyc29y", "after"), ("after=%25%25", "after")):
        reply = daemon.request("GET", f"/api/records/voters?{query}")
        assert reply.status == 400 and reply.body["field"] == field, (query, reply)
    first = daemon.get("/api/records/voters?limit=2")
    assert [r["key"] for r in first["records"]] == ["v-0", "v-1"] and first["next"]
    other = daemon.request("GET", f"/api/records/kunjungan?after={first['next']}")
    assert other.status == 400 and other.body["field"] == "after", other
    last = daemon.get(f"/api/records/voters?limit=2&after={first['next']}")
    assert [r["key"] for r in last["records"]] == ["v-2"] and last["next"] is None
    assert daemon.get("/api/conflicts?limit=10") == {"records": [], "next": None}
    spec = daemon.get("/api/openapi.json")["paths"]
    for path in ("/api/records/{collection}", "/api/conflicts"):
        names = {p["name"] for p in spec[path]["get"]["parameters"]}
        assert {"limit", "after"} <= names
