"""Unit tests of the dial limits and the bounded peer table (issue 14, item 1).

Beside the real-daemon test, ``test_hostile_beacons.py`` (network namespaces), these
run the same rules with a hand-moved clock: adverts are hints, dialling them is
rate-limited per address and in total, backoff follows the address and the claimed id.
The peer manager is given a stand-in endpoint (it only reads the node's device id
before dialling; nothing here dials).
"""

from __future__ import annotations

import os
import random
from types import SimpleNamespace
from typing import Any

from meshsync.daemon.dial_policy import DialPolicy
from meshsync.daemon.peers import MAX_ADDRESSES, MAX_HINTS, PeerManager

from meshsync.model.identity import device_id
from meshsync.net.discovery.budget import AdvertBudget
from meshsync.net.discovery.model import Candidate

A = ("10.77.0.22", 7420)


def policy(**kw: Any) -> DialPolicy:
    return DialPolicy(backoff_min_ms=2000, backoff_max_ms=300_000, rng=random.Random(0), **kw)


def random_id() -> str:
    return device_id(os.urandom(32))


def test_dials_to_one_address_are_spaced() -> None:
    p = policy(min_gap_ms=1000)
    assert p.may_dial(A, None, hint=False, now=10_000)
    p.dialled(A, hint=False, now=10_000)
    assert not p.may_dial(A, None, hint=False, now=10_999)
    assert p.may_dial(A, None, hint=False, now=11_000)


def test_hint_dials_are_bounded_in_total() -> None:
    p = policy(hint_rate_per_s=0.5, hint_burst=4)
    now, dials = 0, 0
    for port in range(1, 5001):  # 5,000 adverts, each at its own address, within 40 s
        now = port * 8
        if p.may_dial(("10.77.0.22", port), random_id(), hint=True, now=now):
            p.dialled(("10.77.0.22", port), hint=True, now=now)
            dials += 1
    assert dials <= 4 + 0.5 * 40 + 1


def test_backoff_follows_the_address_and_the_claimed_id() -> None:
    p = policy()
    claimed = random_id()
    delay = p.hint_failed(A, claimed, 0, wrong_device=True)
    assert 1500 <= delay <= 2500
    assert not p.may_dial(A, random_id(), hint=True, now=1000)  # a new id, same address
    assert not p.may_dial(("10.77.0.99", 7420), claimed, hint=True, now=1000)  # new address
    assert p.may_dial(A, None, hint=False, now=1000)  # the device verified there: not held
    assert p.may_dial(A, random_id(), hint=True, now=delay)
    assert p.hint_failed(A, None, 3000) > delay  # doubles


def test_remembered_backoff_is_bounded() -> None:
    p = policy(max_keys=100)
    for port in range(1, 1000):
        p.hint_failed(("10.77.0.22", port), random_id(), port)
    assert p.statistics()["backoff_entries"] <= 100


def manager(clock: list[int]) -> PeerManager:
    own = SimpleNamespace(key=SimpleNamespace(device_id=random_id()))
    endpoint = SimpleNamespace(node=own, registry=None)
    return PeerManager(endpoint, "m", anti_entropy_s=60, backoff_min_s=2,  # type: ignore[arg-type]
                       backoff_max_s=300, clock=lambda: clock[0], rng=random.Random(0))


def advert(dev: str | None, port: int = 7420) -> Candidate:
    return Candidate("10.77.0.22", port, "broadcast", dev, "m", "pantarlih", "ab")


def test_a_flood_of_adverts_keeps_a_bounded_table_that_expires() -> None:
    clock = [0]
    m = manager(clock)
    for i in range(5000):
        clock[0] = i
        m.found(advert(random_id()))
    assert len(m.peers) == MAX_HINTS
    m.found(advert("not a device id"))
    assert m.ignored["bad_id"] == 1
    clock[0] += m.hint_ttl_ms + 5000
    m._expire_hints(clock[0])
    assert m.peers == {}


def test_an_advert_that_reached_another_device_is_closed_and_backs_off() -> None:
    clock = [10_000]
    m = manager(clock)
    liar, honest = random_id(), random_id()
    m.found(advert(liar))
    m._wrong_device(m.peers[liar], A, honest)  # what a session that verified `honest` does
    assert liar not in m.peers
    assert m.policy.statistics()["wrong_device"] == 1
    m.found(advert(random_id()))  # a new id at the same address waits for the backoff
    [hint] = m.peers.values()
    assert m._address_for(hint, clock[0]) is None
    clock[0] += 300_000
    assert m._address_for(hint, clock[0]) == A


def test_the_advert_budget_drops_a_flood_and_refills() -> None:
    budget = AdvertBudget(200)
    taken = sum(budget.take(10.0) for _ in range(5000))  # 5,000 datagrams at once
    assert taken == 200
    assert not budget.take(10.001)
    assert sum(budget.take(11.0) for _ in range(500)) == 200  # a second later: full again


def test_adverts_claiming_a_known_device_elsewhere_add_few_addresses_and_no_syncs() -> None:
    clock = [0]
    m = manager(clock)
    known = random_id()
    m.found(advert(known))
    m._verified_peer(known, A)  # as after a session that verified it at A
    m.peers[known].dirty = False
    for port in range(1, 1000):  # a spoofer claims it at many ports, with new digests
        m.found(Candidate("10.77.0.99", port, "broadcast", known, "m", "gateway", f"{port:x}"))
    peer = m.peers[known]
    assert len(peer.addresses) == MAX_ADDRESSES and A in peer.addresses
    assert not peer.dirty and peer.role != "gateway"
