"""Refusals travel back down, with real processes (issue 13, item 2).

A loopback district: KPU central (PostgreSQL, ``schema = "coklit"``), a PPK laptop
gateway and a phone, each a real ``meshsync daemon`` on 127.0.0.1 (see
tests/test_gateway_central.py for the setup's reasons). The phone, which has no schema,
accepts a ``voters`` edit central's validator refuses. After phone -> laptop -> central
and back, the phone's ``meshsync status --json`` shows that change refused at central
with the reason and its edits, not safe, and left out of the count at central; a
refusal signed by a phone's key, or altered after central signed it, is refused with a
reason and counts for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonfixtures import DaemonLab, DaemonProcess
from meshsync.coklit.sample import generate
from netfixtures import LOOPBACK, District, run, run_json, wait_until

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model import codec
from meshsync.model.errors import AuthorizationError, RemoteError
from meshsync.model.identity import device_id
from meshsync.replica import custody
from meshsync.replica.receipt import decode_receipt, make_receipt

pytest_plugins = ["pg"]

JILA = "mimika/jila"
TPS = f"{JILA}/diloa/tps-001"
#: name -> (role, certificate scope, default partition)
HOMES = {"central": ("central", "", "mimika"), "gw-jila": ("gateway", JILA, JILA),
         "phone-1": ("pantarlih", f"{JILA}/diloa", TPS),
         "phone-2": ("pantarlih", f"{JILA}/diloa", TPS)}
#: Generated voters of TPS (no real person), complete as the coklit schema wants them.
VOTERS = [v.fields for v in generate(1, "Jila", voters_per_tps=5, tps_per_kampung=1)
          if v.partition == TPS]
FAST = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "anti_entropy_s": 1.0}


class Lab(DaemonLab):
    """The enrolled homes of this test and the daemons it started."""

    def daemon(self, name: str, *, peers: tuple[str, ...] = (), uplink: tuple[str, ...] = (),
               args: tuple[str, ...] = (), **settings: Any) -> DaemonProcess:
        """A daemon on home ``name`` with static peers/uplink and ``settings``."""
        return self.add(DaemonProcess(
            self.home(name), self.logs / f"{name}.log",
            {"mesh": "mimika", "listen": f"{LOOPBACK}:0", **FAST, **settings,
             "static_peers": list(peers), "uplink": list(uplink)},
            args=list(args), stop_timeout=20))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kpu")
    district = District(root)
    for name, (role, scope, partition) in HOMES.items():
        district.enrol(name, role, scope, partition)
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path) -> Iterator[Lab]:
    with Lab.copy_of(template, tmp_path, "kpu") as the_lab:
        yield the_lab


def refused_at_central(lab: Lab, phone: DaemonProcess) -> list[dict[str, Any]]:
    """The phone's refused changes once central's receipt covers its whole feed."""
    def ready() -> tuple[list[dict[str, Any]]] | None:
        held = phone.status()["custody"]
        feeds = held["feeds"]
        if feeds and feeds[0]["central"] + feeds[0].get("central_refused", 0) >= \
                feeds[0]["local"]:
            return (held.get("refused", []),)  # truthy even when nothing is refused
        return None
    try:
        return wait_until(ready, 60, "central's receipt on the phone",  # type: ignore[no-any-return]
                          interval=0.2)[0]
    except AssertionError as exc:
        tails = "\n".join(f"--- {d.name}:\n{d.log()[-1500:]}" for d in lab.daemons)
        raise AssertionError(f"{exc}\n{tails}") from None


def test_a_change_central_refuses_is_shown_refused_on_the_phone(lab: Lab,
                                                                 pg_dsn: str) -> None:
    central = lab.daemon("central", args=("--store", pg_dsn, "--role", "central"),
                         schema="coklit").start()
    gateway = lab.daemon("gw-jila", uplink=(central.address,)).start()
    phone = lab.daemon("phone-1", peers=(gateway.address,)).start()
    five, six, seven = VOTERS[:3]  # whole, valid voters of this TPS (generated)
    bad = {**six, "jenis_kelamin": "X"}  # central's schema refuses it; the phone has none
    phone.put("voters", "v-0005", five)
    phone.put("voters", "v-0006", bad)
    phone.put("voters", "v-0007", seven)

    listed = refused_at_central(lab, phone)
    shown = run_json("status", "--home", lab.home("phone-1"))["custody"]
    (feed,) = shown["feeds"]
    assert feed["safe_at_central"] is False  # main said True: the bug of issue 13
    (entry,) = listed
    assert (entry["partition"], entry["seq"], entry["at"], entry["stage"]) == \
        (TPS, 2, "central", "validation")
    assert entry["issuer"] == central.device_id
    assert "jenis_kelamin: is 'X'" in entry["reason"]
    assert entry["edits"] == [{"collection": "voters", "key": "v-0006",
                               "fields": sorted(bad), "deleted": False}]
    assert (feed["local"], feed["gateway"], feed["central"], feed["central_refused"]) == \
        (3, 3, 2, 1)
    assert shown["refused"] == [entry]
    text = run("status", "--home", lab.home("phone-1")).stdout
    assert "1 refused at central" in text and "safe at central" not in text
    assert f"{TPS} change 2 was refused at central (validation)" in text
    edits = f"voters/v-0006 ({', '.join(sorted(bad))})"
    assert edits in text
    page = str(phone.request("GET", "/").body)
    assert "<tr class='refused'>" in page and edits in page
    for daemon in (phone, gateway, central):
        assert daemon.stop() == 0
    forged_and_altered_refusals_are_ignored(lab, central.device_id)


def forged_and_altered_refusals_are_ignored(lab: Lab, central_id: str) -> None:
    """On the stopped phone: a refusal signed by another phone's key is refused as not
    from a gateway or central; central's receipt altered after signing fails its
    signature; the status (from the store) still lists the one true refusal."""
    from meshsync.replica.receipt import refused_entry  # new in this release

    home = lab.home("phone-1")
    other = Home.open(lab.home("phone-2")).load_key()
    with open_node(home) as node:
        feed = (node.key.public_key, TPS)
        lie = refused_entry(*feed, 1, b"", "validation", "central never wanted this")
        forged = make_receipt(other, JILA, node.now_ms(), {feed: 3}, [lie])
        (real,) = [b for b in node.store.receipts() if decode_receipt(b).refused]
        assert device_id(decode_receipt(real).issuer) == central_id
        raw = codec.unpack(real, max_bytes=1 << 20)
        raw[6][0][5] = "central never wanted this"
        with node.store.transaction():
            with pytest.raises(AuthorizationError, match="not a known gateway or central"):
                custody.add_receipt(node, forged)
            with pytest.raises(RemoteError):
                custody.add_receipt(node, codec.pack(raw))
    shown = run_json("status", "--home", home)["custody"]
    assert [(r["seq"], r["at"]) for r in shown["refused"]] == [(2, "central")]
    assert "never wanted" not in shown["refused"][0]["reason"]
