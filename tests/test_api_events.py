"""``GET /api/events``: the daemon's events as server-sent events (issue 15, item 4).

Real ``meshsync daemon`` processes on 127.0.0.1 (the fixtures of ``test_daemon.py``):
a phone syncing with the district laptop (a gateway) shows its sync on its event
stream, in order (started, changes received, finished), each within a second of
happening; the stream is guarded as every route. In-process: the bus drops the oldest
events for a slow subscriber and says how many with a ``lost`` event.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from contextlib import closing
from typing import Any

import test_daemon
import trio
from meshsync.daemon.api_events import sse
from meshsync.daemon.event_sources import EventSources
from meshsync.daemon.events import EVENT_TYPES, EventBus
from meshsync.daemon.openapi import OPENAPI
from netfixtures import LOOPBACK, VILLAGE
from test_daemon import Lab

template = test_daemon.template
lab = test_daemon.lab


class EventReader:
    """Reads an event stream in a thread: ``(arrival time, event)`` on :attr:`got`."""

    def __init__(self, api: str, token: str) -> None:
        host, port = api.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.got: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    self.got.put((time.time(), json.loads(line[6:])))
        except (OSError, ValueError, AttributeError):  # closed by the test
            return

    def until(self, kind: str, timeout: float = 20) -> list[tuple[float, dict[str, Any]]]:
        """Events up to and including the first of type ``kind``."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            item = self.got.get(timeout=max(0.01, deadline - time.monotonic()))
            seen.append(item)
            if item[1]["type"] == kind:
                return seen

    def close(self) -> None:
        self.conn.close()


SYNC = ("sync.started", "changes.received", "sync.finished")


def _check_timely_and_ordered(events: list[tuple[float, dict[str, Any]]]) -> list[str]:
    """The session events' types; every event within a second, ``seq`` increasing."""
    seqs = [e["seq"] for _, e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for arrived, event in events:
        assert arrived * 1000 - event["at_ms"] < 1000, event  # within a second
    return [e["type"] for _, e in events if e["type"] in SYNC]


def test_a_phones_sync_shows_up_as_events_in_order(lab: Lab) -> None:
    laptop = lab.daemon("laptop").start()
    phone = lab.daemon("phone-a", [laptop.address]).start()
    test_daemon.wait_for(lambda: phone.synced_with(laptop), 30, "the first sync")
    reader = EventReader(phone.runtime["api"], phone.token)
    try:
        phone.put("voters", "v-dari-hp", {"nama": "Contoh Hp"}, f"{VILLAGE}/tps-001")
        sent = reader.until("sync.finished")  # the write makes the phone dial now
        laptop.put("voters", "v-dari-laptop", {"nama": "Contoh Laptop"}, f"{VILLAGE}/tps-001")
        phone.request("POST", "/api/sync")
        received = reader.until("changes.received")
        received += reader.until("sync.finished")
    finally:
        reader.close()
    assert _check_timely_and_ordered(sent) == ["sync.started", "sync.finished"], sent
    finished = sent[-1][1]
    assert (finished["direction"], finished["peer"], finished["error"]) == (
        "outgoing", laptop.device_id, None), finished
    assert finished["changes_sent"] >= 1, finished
    assert sent[0][1]["seq"] < finished["seq"]
    kinds = _check_timely_and_ordered(received)
    assert kinds[-2:] == ["changes.received", "sync.finished"], received
    assert received[-1][1]["changes_received"] >= 1 and received[-1][1]["peer"] == \
        laptop.device_id, received
    assert received[0][1]["seq"] > finished["seq"]


def test_a_failed_dial_ends_with_an_error(lab: Lab) -> None:
    with closing(socket.socket()) as unused:  # a port nobody listens on
        unused.bind((LOOPBACK, 0))
        dead = f"{LOOPBACK}:{unused.getsockname()[1]}"
    phone = lab.daemon("phone-a", [dead]).start()
    reader = EventReader(phone.runtime["api"], phone.token)
    try:
        phone.request("POST", "/api/sync")
        started = reader.until("sync.started")[-1][1]  # a dial that began after we listened
        finished = reader.until("sync.finished")[-1][1]
    finally:
        reader.close()
    assert started["address"] == finished["address"] == dead, (started, finished)
    assert finished["error"] and finished["seq"] > started["seq"], finished


def test_the_stream_is_guarded_as_every_route(lab: Lab) -> None:
    phone = lab.daemon("phone-a").start()
    assert phone.request("GET", "/api/events", token=None).status == 401
    host, port = phone.runtime["api"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {phone.token}",
                                                "Host": f"evil.example:{port}"})
    assert conn.getresponse().status == 421
    conn.close()
    assert phone.request("GET", "/api/events?since=1").status == 400
    assert host == LOOPBACK


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told() -> None:
    async def main() -> None:
        bus = EventBus(size=3)
        sub = bus.subscribe()
        for n in range(5):
            bus.publish("conflicts", conflicts=n)
        with trio.fail_after(1):  # the wake-up runs on a later scheduler tick, not always
            await sub.wakeup.wait()  # the next one: one sleep(0) was flaky under load
        taken = sub.take()
        assert [e["type"] for e in taken] == ["lost", "conflicts", "conflicts", "conflicts"]
        assert taken[0]["lost"] == 2 and [e["seq"] for e in taken[1:]] == [3, 4, 5]
        assert sub.take() == [] and not sub.wakeup.is_set()
        bus.unsubscribe(sub)
        assert bus.subscribers() == 0
        bus.publish("conflicts", conflicts=9)  # nobody listening: only counted
        assert bus.seq == 6
    trio.run(main)


def test_every_event_type_is_documented_and_framed() -> None:
    text = json.dumps(OPENAPI["paths"]["/api/events"])
    for kind in EVENT_TYPES:
        assert f"`{kind}`" in text, kind
    frame = sse({"seq": 7, "type": "conflicts", "conflicts": 1}).decode()
    assert frame == 'id: 7\nevent: conflicts\ndata: {"seq":7,"type":"conflicts",' \
                    '"conflicts":1}\n\n'


def test_states_are_published_only_when_they_change() -> None:
    async def main() -> None:
        bus = EventBus()
        sub = bus.subscribe()
        sources = EventSources(bus)
        up = {"state": "up", "last_error": None}
        sources.state(0, up, {"feeds": [], "receipts": []})  # the first call remembers
        sources.state(0, up, {"feeds": [], "receipts": []})
        assert sub.take() == []
        sources.state(1, {"state": "down", "last_error": "refused"},
                      {"feeds": [{}], "receipts": []})
        got = {e["type"]: e for e in sub.take()}
        assert got["conflicts"]["conflicts"] == 1 and got["custody"]["feeds"] == 1
        assert (got["uplink"]["state"], got["uplink"]["last_error"]) == ("down", "refused")
    trio.run(main)
