"""Refusals travel back down with custody receipts (issue 13, item 2), replica level.

Central refuses a phone's change (its validator, its authorization); central's receipt
lists the refusal, signed with the version vector; on the phone, custody shows the
edit as refused at central with the reason, never as safe, and the count at central
leaves it out. A receipt with no refusals has no refusal element; a refusal signed
by a device that is not a gateway or central, or altered, does not count.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.errors import AuthorizationError, RemoteError
from meshsync.model.identity import DeviceKey
from meshsync.protocol.meta import compact_receipt, expand_receipt, receipt_base
from meshsync.replica import custody
from meshsync.replica.node import Node
from meshsync.replica.receipt import (
    VERSION,
    VERSION_CHECKS,
    decode_receipt,
    make_receipt,
    refused_entry,
)
from meshsync.replica.refusals import describe
from meshsync.store.memory import MemoryStore

TPS = "mimika/jila/diloa/tps-001"
NOW = 1_780_000_000_000


class RoleTrust:
    """Trust with known roles: ``roles`` maps key -> certificate role (verified);
    authors in ``banned`` are refused (as a revoked or out-of-scope device is)."""

    def __init__(self) -> None:
        self.roles: dict[bytes, str] = {}
        self.banned: set[bytes] = set()

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        if author in self.banned:
            raise AuthorizationError("its certificate was revoked")

    def device_info(self, key: bytes) -> list[dict[str, Any]]:
        role = self.roles.get(key)
        return [{"status": "verified", "role": role}] if role else []


def no_bad_field(key: str, fields: dict[str, Any], *, partial: bool) -> list[tuple[str, str]]:
    """A validator that refuses the field ``bad``."""
    return [("bad", "is not allowed here")] if "bad" in fields else []


@pytest.fixture
def district() -> dict[str, Node]:
    trust = RoleTrust()
    nodes = {name: Node(MemoryStore(), DeviceKey.generate(), lambda: NOW, trust=trust,
                        default_partition=TPS) for name in ("phone", "phone-2", "central")}
    trust.roles = {nodes["central"].key.public_key: "central",
                   nodes["phone"].key.public_key: "pantarlih",
                   nodes["phone-2"].key.public_key: "pantarlih"}
    nodes["central"].register_validator("voters", no_bad_field)
    return nodes


def central_receives(central: Node, *phones: Node) -> bytes:
    """Central takes every change of ``phones`` and issues its receipt for the district."""
    for phone in phones:
        central.receive(phone.changes_since({}), source="phone")
    with central.store.transaction():
        return custody.issue_receipt(central, "mimika")


def phone_feed(phone: Node) -> FeedId:
    return (phone.key.public_key, TPS)


def give(node: Node, blob: bytes) -> None:
    with node.store.transaction():
        custody.add_receipt(node, blob)


def test_a_change_central_finds_invalid_is_refused_on_the_phone(
        district: dict[str, Node]) -> None:
    phone, central = district["phone"], district["central"]
    phone.put("voters", "v-0005", {"nama": "Warga Contoh 5"})
    phone.put("voters", "v-0006", {"nama": "Warga Contoh 6", "bad": 1})
    phone.put("voters", "v-0007", {"nama": "Warga Contoh 7"})
    blob = central_receives(central, phone)
    receipt = decode_receipt(blob)
    assert receipt.vv == {(phone.key.public_key, TPS): 3}  # kept, and forwarded
    (entry,) = receipt.refused
    assert (entry.seq, entry.stage) == (2, "validation")
    assert entry.hash == phone.store.change_at((phone.key.public_key, TPS), 2).hash  # type: ignore[union-attr]
    give(phone, blob)

    held = custody.custody(phone)
    (feed,) = held["feeds"]
    assert (feed["local"], feed["central"], feed["central_refused"]) == (3, 2, 1)
    assert feed["safe_at_central"] is False
    (refused,) = held["refused"]
    assert refused["at"] == "central" and refused["stage"] == "validation"
    assert "bad: is not allowed here" in refused["reason"]
    assert refused["edits"] == [{"collection": "voters", "key": "v-0006",
                                 "fields": ["bad", "nama"], "deleted": False}]
    assert describe(refused).startswith(f"{TPS} change 2 was refused at central (validation)")
    assert "voters/v-0006 (bad, nama)" in describe(refused)


def test_an_author_central_refuses_is_told_which_change_stopped_there(
        district: dict[str, Node]) -> None:
    phone, central = district["phone-2"], district["central"]
    phone.put("voters", "v-0100", {"nama": "Warga Contoh 100"})
    phone.put("voters", "v-0101", {"nama": "Warga Contoh 101"})
    central.trust.banned.add(phone.key.public_key)  # type: ignore[attr-defined]
    blob = central_receives(central, phone)
    give(phone, blob)
    held = custody.custody(phone)
    assert [(r["seq"], r["stage"]) for r in held["refused"]] == [(1, "authorization")]
    assert "revoked" in held["refused"][0]["reason"]
    (feed,) = held["feeds"]
    assert (feed["central"], feed["safe_at_central"]) == (0, False)


def test_a_receipt_without_refusals_has_seven_elements_and_a_three_element_compact_form(
        district: dict[str, Node]) -> None:
    phone, central = district["phone"], district["central"]
    phone.put("voters", "v-0005", {"nama": "Warga Contoh 5"})
    blob = central_receives(central, phone)
    receipt = decode_receipt(blob)
    raw = codec.unpack(blob, max_bytes=1 << 20)
    assert (raw[1], len(raw)) == (VERSION_CHECKS, 7) and receipt.refused == ()
    assert blob == make_receipt(central.key, "mimika", receipt.at_ms, receipt.vv,
                                checks=receipt.checks)
    base = receipt_base(receipt.vv)
    assert len(compact_receipt(blob, base)) == 3
    give(phone, blob)
    (feed,) = custody.custody(phone)["feeds"]
    assert feed["safe_at_central"] is True and custody.custody(phone)["refused"] == []


def test_an_old_receipt_without_checks_still_decodes_but_counts_nothing(
        district: dict[str, Node]) -> None:
    """Version 1 (and 2) receipts name seqs, not changes: unverified, so not safe."""
    phone, central = district["phone"], district["central"]
    phone.put("voters", "v-0005", {"nama": "Warga Contoh 5"})
    central.receive(phone.changes_since({}), source="phone")
    blob = make_receipt(central.key, "mimika", NOW, central.version_vector())
    assert codec.unpack(blob, max_bytes=1 << 20)[1] == VERSION  # byte for byte as before
    receipt = decode_receipt(blob)
    assert not receipt.checked and receipt.check_of(phone_feed(phone)) is None
    base = receipt_base(receipt.vv)
    item = compact_receipt(blob, base)
    assert item[3:] == [[], False]
    assert expand_receipt(item, central.key.public_key, "mimika", base) == blob
    give(phone, blob)
    held = custody.custody(phone)
    (feed,) = held["feeds"]
    assert (feed["central"], feed["safe_at_central"]) == (0, False)
    (row,) = held["receipts"]
    assert "no head checks" in row["unverified"]


def test_the_compact_session_form_carries_the_refusals(district: dict[str, Node]) -> None:
    phone, central = district["phone"], district["central"]
    phone.put("voters", "v-0006", {"bad": 1})
    blob = central_receives(central, phone)
    base = receipt_base(decode_receipt(blob).vv)
    item = compact_receipt(blob, base)
    assert len(item) == 4
    checks = decode_receipt(blob).checks
    expected = [checks[f] for f, _seq in base]  # what a receiver holding them fills in
    assert expand_receipt(item, central.key.public_key, "mimika", base, expected) == blob


def test_a_forged_or_altered_refusal_is_ignored_with_a_reason(
        district: dict[str, Node]) -> None:
    phone, other, central = district["phone"], district["phone-2"], district["central"]
    phone.put("voters", "v-0005", {"nama": "Warga Contoh 5"})
    good = central_receives(central, phone)
    give(phone, good)
    feed = (phone.key.public_key, TPS)
    lie = refused_entry(*feed, 1, b"", "validation", "central never wanted this")
    forged = make_receipt(other.key, "mimika", NOW, {feed: 1}, [lie])
    with pytest.raises(AuthorizationError, match="not a known gateway or central device"):
        give(phone, forged)
    raw = codec.unpack(make_receipt(central.key, "mimika", NOW + 1, {feed: 1}, [lie]),
                       max_bytes=1 << 20)
    raw[6][0][5] = "altered after signing"
    with pytest.raises(RemoteError):
        give(phone, codec.pack(raw))
    # Even held (e.g. from an older release's store), the forged one counts for nothing.
    with phone.store.transaction():
        phone.store.put_receipt(other.key.public_key, "mimika", NOW, forged)
    held = custody.custody(phone)
    assert held["refused"] == [] and held["feeds"][0]["safe_at_central"] is True
    ignored = [r for r in held["receipts"] if r.get("ignored")]
    assert len(ignored) == 1 and ignored[0]["refusals"] == 1


def test_a_gap_filled_later_is_no_longer_listed(district: dict[str, Node]) -> None:
    phone, central = district["phone"], district["central"]
    for n in range(3):
        phone.put("voters", f"v-010{n}", {"nama": "Warga Contoh"})
    changes = list(phone.changes_since({}))
    central.receive(changes[1:], source="phone")  # seq 1 missing: a gap, refused
    with central.store.transaction():
        assert [(r.seq, r.stage) for r in decode_receipt(
            custody.issue_receipt(central, "mimika")).refused] == [(2, "hash chain")]
    blob = central_receives(central, phone)
    assert decode_receipt(blob).refused == ()
    give(phone, blob)
    assert custody.custody(phone)["feeds"][0]["safe_at_central"] is True
