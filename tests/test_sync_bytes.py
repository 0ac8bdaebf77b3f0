"""Bytes of an incremental sync (protocol version 2), and the safety each saving keeps.

A central-like device holds many feeds (one a TPS); after a full sync it makes
single-field edits, each its own signed change, and syncs again. What crosses the
wire must stay near the signatures and ops themselves: the version vector costs a
few bytes a feed, a feed section that continues a feed the receiver holds costs a
short item instead of its partition and 32-byte prev hash, and the receipts issued
at the end of the session carry no version vector. Each bound below fails with
protocol version 1. The receiver still rebuilds every canonical body and verifies
every signature; a feed that forked is still reported as a fork, with evidence.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Device, exchange

from meshsync.model import codec
from meshsync.model.change import decode_body
from meshsync.protocol import frames as fr
from meshsync.protocol.events import SessionDone, SessionFailed
from meshsync.protocol.meta import VV_CHECK, compact_receipt, expand_receipt, receipt_base
from meshsync.protocol.peer import Peer, holdings
from meshsync.protocol.session import SessionConfig, SessionError, State
from meshsync.protocol.stream import (
    COMPACT,
    FEED_REF,
    PREV_CHECK,
    SMALL_CHANGE,
    SessionDecoder,
    SessionEncoder,
)
from meshsync.protocol.wire import CHANGE, FEED, WireEncoder
from meshsync.replica import custody
from meshsync.replica.receipt import decode_receipt, head_check
from meshsync.testing.faults import SessionPair, frame_message, split_frames

MakeDevice = Callable[..., Device]
SCOPE = "mimika/jila"
TPS = "mimika/jila/diloa/tps-003"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope=SCOPE)
CENTRAL = dataclasses.replace(CONFIG, role="central", issue_receipts=True)
GATEWAY = dataclasses.replace(CONFIG, role="gateway", issue_receipts=True)
FEEDS, RECORDS, EDITS = 40, 20, 200
SIG = 64


def tps(i: int) -> str:
    return f"{SCOPE}/kampung-uji-{i // 10:02d}/tps-{i % 10 + 1:03d}"


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(a: Device, b: Device, config_a: SessionConfig = CONFIG,
        config_b: SessionConfig = CONFIG) -> SessionPair:
    pair = SessionPair(Peer(a.node, config_a, now_ms=a.clock()),
                       Peer(b.node, config_b, now_ms=b.clock()), a.clock, b.clock)
    pair.pump()
    return pair


def ends(pair: SessionPair) -> list[SessionDone]:
    out = []
    for side in pair.sides:
        (end,) = [e for e in side.events if isinstance(e, SessionDone | SessionFailed)]
        assert isinstance(end, SessionDone), end
        out.append(end)
    return out


def messages(pair: SessionPair, sender: int) -> list[tuple[list[Any], int]]:
    """Every message ``sender`` sent, with its frame's size."""
    return [(frame_message(f), len(f))
            for f in pair.pipes[sender].history]


def item_bytes(pair: SessionPair, sender: int) -> Counter[int]:
    """Bytes of the items of ``sender``'s CHANGES frames, by item tag."""
    out: Counter[int] = Counter()
    for message, _ in messages(pair, sender):
        if message[0] == fr.CHANGES:
            for item in message[2]:
                out[item[0]] += len(codec.pack(item))
    return out


def central_with_edits(make_device: MakeDevice, kind: str) -> tuple[Device, Device]:
    """A central holding FEEDS feeds of RECORDS voters, a laptop that synced all of it,
    then EDITS single-field edits at central (each its own change, 5 a feed)."""
    central = make_device("central", kind, partition=TPS)
    laptop = make_device("laptop-GW", kind, partition=TPS)
    for f in range(FEEDS):
        central.write(tps(f), [("put", "voters", f"v-{f * RECORDS + r:07d}",
                                {"nama": f"Contoh {r}", "status": "MS", "keterangan": ""})
                               for r in range(RECORDS)])
    ends(run(central, laptop, CENTRAL, GATEWAY))
    for e in range(EDITS):
        f, r = e % FEEDS, e // FEEDS
        central.clock.advance(1000)
        central.put("voters", f"v-{f * RECORDS + r:07d}", {"status": "TMS"}, tps(f))
    laptop.clock.advance(EDITS * 1000)  # its next receipt is newer than its first
    return central, laptop


def test_incremental_sync_costs_little_beyond_signatures_and_ops(
        make_device: MakeDevice, kind: str) -> None:
    central, laptop = central_with_edits(make_device, kind)
    pair = run(central, laptop, CENTRAL, GATEWAY)
    done = ends(pair)
    assert all(d.summary.converged for d in done)
    assert done[1].summary.changes_received == EDITS and laptop.store.count_changes() \
        == central.store.count_changes() == FEEDS + EDITS
    assert laptop.canonical_state() == central.canonical_state()

    # Per part, each bound breaks with protocol version 1:
    for sender in (0, 1):
        sent = messages(pair, sender)
        (vv, vv_size), = [(m, n) for m, n in sent if m[0] == fr.VV]
        assert vv[2] is None and vv[3] is None  # same credentials and receipts: nil
        # v1: ~72 B a feed (key, partition); v3 adds a 4-byte head check a feed
        assert vv_size <= (8 + VV_CHECK) * FEEDS + 80, vv_size
        receipts = [n for m, n in sent if m[0] == fr.RCPT]
        assert len(receipts) == 1 and receipts[0] <= 110, receipts  # v1: ~72 B a feed
    items = item_bytes(pair, 0)
    assert items[FEED] == 0  # every section continues a feed the laptop holds
    assert items[FEED_REF] <= FEEDS * (6 + PREV_CHECK), items  # v1: ~80 B a section
    # Change items: the signature and the op (collection and field name from the
    # session's name table), and a few bytes of framing and hlc; only the stream's
    # first hlc is absolute (v1: every section's first).
    op = len(codec.pack([[0, 0, "v-0000000", [1, "TMS"], [[2**40, 0]]]]))
    assert items[CHANGE] == 0 and items[COMPACT] <= EDITS * (SIG + 2 + op + 7), items
    dhlcs = [item[1] for m, _ in messages(pair, 0) if m[0] == fr.CHANGES for item in m[2]
             if item[0] == COMPACT]
    assert sum(d > 2**40 for d in dhlcs) == 1
    total = sum(p.bytes_written for p in pair.pipes)
    assert total <= EDITS * (SIG + 2 + op + 7) \
        + FEEDS * (2 * (8 + VV_CHECK) + 6 + PREV_CHECK) + 1200, total
    # Every change arrived as its author signed it.
    for change in laptop.changes_since({}):
        decode_body(change.body, change.sig).verify()


def test_session_items_round_trip_and_bundle_items_stay_as_they_were(
        make_device: MakeDevice) -> None:
    a, b = make_device("phone-A", partition=TPS), make_device("laptop-GW", partition=TPS)
    for i in range(12):
        a.put("voters", f"v-{i}", {"status": "MS", "rt": i}, tps(i % 3))
    a.write(tps(2), [("put", "voters", f"w-{i}", {"n": i}) for i in range(SMALL_CHANGE + 1)])
    a.put("voters", "w-0", dict.fromkeys("abcde", 1), tps(2))  # a whole record
    b.receive([c for c in a.changes_since({}) if c.seq <= 2 and c.partition != tps(2)])
    held = holdings(b.node, SCOPE)
    refs = {feed: (index, seq) for index, (feed, seq) in enumerate(held.vv)}
    changes = list(a.changes_since(dict(held.vv)))
    encoder, decoder = SessionEncoder(refs), SessionDecoder(held)
    items = [codec.pack(item) for change in changes for item in encoder.encode(change)]
    got = [decoder.decode(codec.unpack(item, max_bytes=1 << 20)) for item in items]
    assert [(c.body, c.sig) for c in got if c] == [(c.body, c.sig) for c in changes]
    unpacked = [codec.unpack(item, max_bytes=1 << 20) for item in items]
    tags = [item[0] for item in unpacked]
    assert tags.count(FEED_REF) == 2 and tags.count(FEED) == 1  # tps(2): b holds none
    assert tags.count(CHANGE) == 1 and tags.count(COMPACT) == len(changes) - 1
    assert type(unpacked[-1][2][0][3]) is dict  # five fields: its map as it is
    # Bundles keep version 1 items: a full feed item and an absolute hlc per section.
    plain = WireEncoder()
    bundle = [item for change in changes for item in plain.encode(change)]
    assert {i[0] for i in bundle} == {0, FEED, CHANGE}
    firsts = [next(i[1] for i in bundle[k:] if i[0] == CHANGE)
              for k, item in enumerate(bundle) if item[0] == FEED]
    starts = [c.hlc for k, c in enumerate(changes) if k == 0 or c.feed != changes[k - 1].feed]
    assert firsts == starts and len(starts) == 3


def test_receipts_issued_at_the_end_arrive_whole(make_device: MakeDevice, kind: str) -> None:
    central, laptop = central_with_edits(make_device, kind)
    ends(run(central, laptop, CENTRAL, GATEWAY))
    for holder, issuer in ((laptop, central), (central, laptop)):
        held = {decode_receipt(b).issuer: decode_receipt(b) for b in holder.store.receipts()}
        receipt = held[issuer.key.public_key]  # verified against the issuer's key
        assert receipt.scope == SCOPE
        assert receipt.vv == central.version_vector() == laptop.version_vector()


def forked(make_device: MakeDevice, kind: str) -> tuple[Device, Device]:
    """``b`` holds phone-A's feed to seq 3; ``c`` holds a fork of it: A restored from a
    backup of seq 2 and wrote another seq 3 and a seq 4."""
    a, b, c = (make_device(n, kind, partition=TPS) for n in ("phone-A", "laptop-GW", "central"))
    for i in range(3):
        a.put("voters", f"v-{i}", {"status": "MS"})
    exchange(a, b)
    restored = Device.memory("phone-A", partition=TPS)  # the same key, another store
    restored.receive([ch for ch in a.changes_since({}) if ch.seq <= 2])
    restored.clock.advance(5000)
    restored.put("voters", "v-9", {"status": "TMS"})
    restored.put("voters", "v-0", {"status": "TMS"})
    exchange(restored, c)
    return b, c


def test_fork_behind_a_short_feed_item_is_still_reported_as_a_fork(
        make_device: MakeDevice, kind: str) -> None:
    b, c = forked(make_device, kind)
    feed = (b.store.feeds()[0].author, TPS)
    held = b.store.change_at(feed, 3)
    pair = run(c, b, CENTRAL, GATEWAY)
    done = ends(pair)  # no signature failure: the session ends normally
    assert not done[0].summary.converged  # b refused the fork, so they still differ
    (refusal,) = done[1].summary.apply.refused
    assert refusal.stage == "fork" and refusal.seq == 4
    (evidence,) = b.store.forks()
    assert evidence.seq == 3 and held is not None and evidence.held_hash == held.hash
    decode_body(evidence.other_body, evidence.other_sig).verify()  # genuinely signed by phone-A
    assert b.store.feed_head(feed).head_seq == 3  # type: ignore[union-attr]
    # How: a short feed item, an ACK asking for the feed again, the full feed item.
    tags = [item[0] for m, _ in messages(pair, 0) if m[0] == fr.CHANGES for item in m[2]]
    assert tags.index(FEED_REF) < tags.index(FEED)
    assert any(m[0] == fr.ACK and len(m) == 3 for m, _ in messages(pair, 1))
    # b's receipt (its vector differs from the session's base) still reaches c whole.
    receipts = [decode_receipt(r) for r in c.store.receipts()]
    (receipt,) = [r for r in receipts if r.issuer == b.key.public_key]
    assert receipt.vv[feed] == 3


def test_fork_found_in_a_later_frame_with_a_small_window(make_device: MakeDevice) -> None:
    b, c = forked(make_device, "memory")
    for i in range(30):  # other feeds first, so the forked one comes frames later
        c.write(f"mimika/jila/amua/tps-{i:03d}", [("put", "voters", f"w-{i}", {"n": i})])
    small = dataclasses.replace(CONFIG, window=1, frame_target=200)
    done = ends(run(c, b, small, small))
    assert [r.stage for r in done[1].summary.apply.refused] == ["fork"]
    assert done[1].summary.changes_received == 30 and len(b.store.forks()) == 1


def test_request_to_resend_a_feed_never_named_is_refused(make_device: MakeDevice) -> None:
    a, b = make_device("phone-A", partition=TPS), make_device("laptop-GW", partition=TPS)
    for i in range(3):
        a.put("voters", f"v-{i}", {"status": "MS"})
        if i == 0:
            exchange(a, b)  # b holds seq 1: a names the feed with a short item

    def streaming() -> Peer:
        session = Peer(a.node, CONFIG, now_ms=a.clock())
        peer = Peer(b.node, CONFIG, now_ms=b.clock())
        # until a has sent its CHANGES frame (b, with nothing to send, sent all at once)
        while session.state != State.PEER_SENT_ALL:
            peer.receive_data(session.data_to_send(), b.clock())
            session.receive_data(peer.data_to_send(), a.clock())
        return session

    with pytest.raises(SessionError, match="unexpected request to send feed 5 again"):
        streaming().receive_data(fr.encode_frame([fr.ACK, 1, [5]]), a.clock())
    session = streaming()
    session.data_to_send()  # its CHANGES frame, with a short feed item
    session.receive_data(fr.encode_frame([fr.ACK, 1, [0]]), a.clock())  # legal: once
    resent = [frame_message(f) for f in split_frames(
        session.data_to_send())]
    assert [m[0] for m in resent] == [fr.CHANGES, fr.SENT_ALL]
    assert [item[0] for item in resent[0][2]][:2] == [0, FEED]  # actor, full feed item
    with pytest.raises(SessionError, match="feeds asked for after sent-all"):
        session.receive_data(fr.encode_frame([fr.ACK, 2, [0]]), a.clock())


def test_version_1_peer_is_refused_clearly(make_device: MakeDevice) -> None:
    b = make_device("laptop-GW", partition=TPS)
    session = Peer(b.node, CONFIG, now_ms=b.clock())
    hello = {"proto": 1, "mesh": "kpu-mimika", "device": b"k" * 32, "role": "pantarlih",
             "scope": SCOPE, "clock_ms": b.clock()}
    with pytest.raises(SessionError) as caught:
        session.receive_data(fr.encode_frame([fr.HELLO, hello]), b.clock())
    assert caught.value.stage == "version"
    assert ("meshsync protocol version 1 cannot sync with version "
            f"{fr.PROTOCOL_VERSION}: upgrade meshsync on the device that speaks version 1"
            ) in str(caught.value)


def test_only_what_differs_is_listed(make_device: MakeDevice) -> None:
    """Same changes, a receipt only one side holds: the VV message sends the receipt
    digests only (nil for feeds and credentials), then the receipt itself."""
    a, b = make_device("laptop-GW", partition=TPS), make_device("phone-B", partition=TPS)
    a.put("voters", "v-1", {"status": "MS"})
    exchange(a, b)
    with a.store.transaction():
        blob = custody.issue_receipt(a.node, SCOPE)
    pair = run(a, b)
    assert all(d.summary.converged for d in ends(pair))
    for sender in (0, 1):
        (vv,) = [m for m, _ in messages(pair, sender) if m[0] == fr.VV]
        assert vv[1] is None and vv[2] is None and type(vv[3]) is list
    assert b.store.receipts() == [blob]


def test_compact_receipt_rebuilds_the_signed_blob(make_device: MakeDevice) -> None:
    a = make_device("laptop-GW", partition=TPS)
    for i in range(4):
        a.put("voters", f"v-{i}", {"status": "MS"}, tps(i))
    with a.store.transaction():
        blob = custody.issue_receipt(a.node, SCOPE)
    vv = a.version_vector()
    key = a.key.public_key
    mine = {f.feed: (f.head_seq, head_check(f.head_hash)) for f in a.store.feeds()}

    def expected(order: list[tuple[tuple[bytes, str], int]]) -> list[bytes | None]:
        """The receiver's checks: those of the changes it holds (here: a's own)."""
        return [mine[f][1] if mine.get(f, (0,))[0] == s else None for f, s in order]

    for base in ({}, vv, {**vv, (key, tps(0)): 9}, {(key, tps(1)): 1, (b"x" * 32, TPS): 2}):
        order = receipt_base(base)
        item = compact_receipt(blob, order)
        assert expand_receipt(item, key, SCOPE, order, expected(order)) == blob
        assert item[1] == [] or base != vv
    order = receipt_base(vv)
    assert compact_receipt(blob, order)[1] == []
    forged = compact_receipt(blob, order)
    forged[2] = bytes([forged[2][0] ^ 1]) + forged[2][1:]
    with pytest.raises(Exception, match="signature"):
        decode_receipt(expand_receipt(forged, key, SCOPE, order, expected(order)))
    # A receiver holding another change at a seq (a fork at the head) cannot rebuild
    # the issuer's receipt: it never verifies, so it never counts.
    other = [b"\xff" * 8 if c else c for c in expected(order)]
    with pytest.raises(Exception, match="signature"):
        decode_receipt(expand_receipt(compact_receipt(blob, order), key, SCOPE, order, other))
    with pytest.raises(Exception, match="cannot check"):
        expand_receipt(compact_receipt(blob, order), key, SCOPE, order)


def test_a_fork_at_the_head_seq_is_not_converged_and_leaves_evidence(
        make_device: MakeDevice, kind: str) -> None:
    """Central and a laptop hold different seq 1 changes of one phone's feed (it was
    restored from an older backup): both VVs say seq 1, yet the session sees the fork
    (the VV head checks), each side sends its head change in full and keeps the
    other's as fork evidence, and neither says converged. Central's receipt names its
    own seq 1, so the restored phone does not count its seq 1 as safe at central."""
    phone, restored = make_device("phone", kind, partition=TPS), make_device("phone", "memory",
                                                                            partition=TPS)
    central, laptop = make_device("central", kind), make_device("laptop-GW", kind)
    phone.put("voters", "v-1", {"status": "MS"})
    restored.put("voters", "v-1", {"status": "TMS"})
    central.receive(list(phone.changes_since({})))
    laptop.receive(list(restored.changes_since({})))
    pair = run(central, laptop, CENTRAL, GATEWAY)
    done = ends(pair)
    assert [d.summary.converged for d in done] == [False, False]
    assert [d.summary.forked_heads for d in done] == [1, 1]
    feed = (phone.key.public_key, TPS)
    for node, other in ((central, restored), (laptop, phone)):
        (evidence,) = node.store.forks()
        assert (evidence.author, evidence.partition, evidence.seq) == (*feed, 1)
        assert node.store.change_at(feed, 1).hash != other.store.change_at(feed, 1).hash
    assert done[1].summary.receipts_received == 1  # central's, rebuilt and verified
    (receipt,) = [r for r in custody.held_receipts(laptop.node)
                  if r.issuer == central.key.public_key]
    # On the restored phone, central's receipt holds nothing of that feed, and says why.
    held, fork = custody.held_by(restored.node, feed, "central", receipt)
    assert held == 0 and fork is not None and fork["stage"] == "fork"
    assert "another change at seq 1" in fork["reason"]
    assert custody.held_by(phone.node, feed, "central", receipt) == (1, None)


def test_identical_peers_and_a_converged_pair_stay_at_one_round_trip(
        make_device: MakeDevice, kind: str) -> None:
    central, laptop = central_with_edits(make_device, kind)
    ends(run(central, laptop, CENTRAL, GATEWAY))
    pair = run(central, laptop, CENTRAL, GATEWAY)
    assert all(d.summary.converged for d in ends(pair))
    sent = [m[0] for m, _ in messages(pair, 0)]
    assert sent == [fr.HELLO, fr.SUMMARY]
    assert sum(p.bytes_written for p in pair.pipes) <= 400
