"""Custody counts changes, not seqs: receipts carry a head check per feed (version 3).

A phone that sent its seq 1 to central and was then restored from an older backup
writes another seq 1 (a fork of its own feed at the head). Central's receipt says
"seq 1" with the check of *its* seq 1: the phone must not count its own seq 1 as safe
there, and shows the fork with a reason. Old receipts (no checks) still decode but
count nothing.
"""

from __future__ import annotations

import pytest
from test_refusals import NOW, TPS, RoleTrust, give, phone_feed

from meshsync.model import codec
from meshsync.model.errors import DecodeError
from meshsync.model.identity import DeviceKey
from meshsync.replica import custody
from meshsync.replica.node import Node
from meshsync.replica.receipt import (
    CHECK_BYTES,
    VERSION_CHECKS,
    decode_receipt,
    head_check,
    make_receipt,
    refused_entry,
)
from meshsync.store.memory import MemoryStore


@pytest.fixture
def nodes() -> dict[str, Node]:
    trust = RoleTrust()
    made = {name: Node(MemoryStore(), DeviceKey.generate(), lambda: NOW, trust=trust,
                       default_partition=TPS) for name in ("phone", "central")}
    # The phone restored from a backup: same key, an older store.
    made["restored"] = Node(MemoryStore(), made["phone"].key, lambda: NOW, trust=trust,
                            default_partition=TPS)
    trust.roles = {made["central"].key.public_key: "central",
                   made["phone"].key.public_key: "pantarlih"}
    return made


def issue(central: Node) -> bytes:
    with central.store.transaction():
        return custody.issue_receipt(central, "mimika")


def test_receipt_with_checks_round_trips(nodes: dict[str, Node]) -> None:
    phone, central = nodes["phone"], nodes["central"]
    phone.put("voters", "v-1", {"status": "MS"})
    phone.put("voters", "v-1", {"status": "TMS"})
    central.receive(phone.changes_since({}), source="phone")
    blob = issue(central)
    receipt = decode_receipt(blob)
    feed = phone_feed(phone)
    own = phone.store.change_at(feed, 2)
    assert own is not None and receipt.checked and receipt.vv == {feed: 2}
    assert receipt.check_of(feed) == head_check(own.hash) and len(own.hash[:CHECK_BYTES]) == 8
    raw = codec.unpack(blob, max_bytes=1 << 20)
    assert raw[1] == VERSION_CHECKS and raw[5] == [[feed[0], TPS, 2, own.hash[:8]]]
    lie = refused_entry(feed[0], TPS, 2, own.hash, "validation", "bad")
    with_refusal = make_receipt(central.key, "mimika", NOW, receipt.vv, [lie], receipt.checks)
    again = decode_receipt(with_refusal)
    assert len(codec.unpack(with_refusal, max_bytes=1 << 20)) == 8
    assert again.checks == receipt.checks and again.refused == (lie,)
    with pytest.raises(ValueError, match="check per feed"):
        make_receipt(central.key, "mimika", NOW, receipt.vv, checks={})
    tampered = codec.pack([*raw[:5], [[feed[0], TPS, 2, b"\x00" * 7]], raw[6]])
    with pytest.raises(DecodeError, match="malformed receipt entry"):
        decode_receipt(tampered)


def test_custody_refuses_a_receipt_naming_another_change_at_the_head(
        nodes: dict[str, Node]) -> None:
    phone, central, restored = nodes["phone"], nodes["central"], nodes["restored"]
    phone.put("voters", "v-1", {"status": "MS"})
    central.receive(phone.changes_since({}), source="usb bundle")
    restored.put("voters", "v-1", {"status": "TMS"})  # another seq 1
    give(restored, issue(central))
    held = custody.custody(restored)
    (feed,) = held["feeds"]
    assert (feed["local"], feed["central"], feed["safe_at_central"]) == (1, 0, False)
    (fork,) = held["refused"]
    assert (fork["seq"], fork["at"], fork["stage"]) == (1, "central", "fork")
    assert "another change at seq 1" in fork["reason"]
    assert fork["edits"] == [{"collection": "voters", "key": "v-1", "fields": ["status"],
                              "deleted": False}]
    # The original phone, whose seq 1 central holds, is safe.
    give(phone, issue(central))
    (feed,) = custody.custody(phone)["feeds"]
    assert feed["safe_at_central"] is True and custody.custody(phone)["refused"] == []


def test_custody_refuses_a_receipt_beyond_this_devices_head(nodes: dict[str, Node]) -> None:
    phone, central, restored = nodes["phone"], nodes["central"], nodes["restored"]
    phone.put("voters", "v-1", {"status": "MS"})
    restored.receive(phone.changes_since({}), source="backup")
    phone.put("voters", "v-2", {"status": "MS"})
    central.receive(phone.changes_since({}), source="phone")
    give(restored, issue(central))
    held = custody.custody(restored)
    (feed,) = held["feeds"]
    assert (feed["local"], feed["central"], feed["safe_at_central"]) == (1, 0, False)
    (fork,) = held["refused"]
    assert (fork["seq"], fork["stage"]) == (2, "fork") and "beyond" in fork["reason"]
