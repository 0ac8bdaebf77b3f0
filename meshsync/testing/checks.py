"""End-of-run checks of the simulator (see :mod:`meshsync.testing.sim`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.identity import sha256
from meshsync.model.limits import MAX_CHANGE_BYTES
from meshsync.replica.node import Node
from meshsync.replica.receipt import decode_receipt
from meshsync.store import MemoryStore

if TYPE_CHECKING:
    from meshsync.testing.sim import SimDevice, Simulation


def check_store(sim: Simulation, device: SimDevice) -> None:
    """Everything written is held, chains hold, nothing refused, receipts honest."""
    store = device.store
    for (author, partition, seq), change in sim.ledger.items():
        held = store.change_at((author, partition), seq)
        if held is None or held.hash != change.hash:
            raise AssertionError(f"{device.name} lacks change {partition} seq {seq} "
                                 f"by {author.hex()[:8]}")
    if store.count_changes() != len(sim.ledger):
        raise AssertionError(f"{device.name} holds {store.count_changes()} changes, "
                             f"{len(sim.ledger)} were written")
    for info in store.feeds():
        check_chain(device.name, info.feed, store)
    if store.refusals() or store.forks():
        raise AssertionError(f"{device.name} refused changes: {store.refusals()[:3]} "
                             f"forks: {len(store.forks())}")
    check_receipts(sim, device)
    saved = int.from_bytes(store.get_meta("hlc") or b"", "big")
    if device.node.hlc.last != saved:
        raise AssertionError(f"{device.name} clock in memory {device.node.hlc.last} is "
                             f"not the stored one {saved}")

def check_receipts(sim: Simulation, device: SimDevice) -> None:
    """B16: a custody receipt never claims a change its issuer does not hold."""
    issuers = {d.key.public_key: d for d in sim.devices}
    for blob in device.store.receipts():
        receipt = decode_receipt(blob)
        held = issuers[receipt.issuer].node.version_vector()
        for feed, seq in receipt.vv.items():
            if held.get(feed, 0) < seq:
                raise AssertionError(f"{device.name} holds a receipt by "
                                     f"{issuers[receipt.issuer].name} claiming {feed[1]} "
                                     f"seq {seq}, which its issuer lacks")



def check_chain(name: str, feed: FeedId, store: MemoryStore) -> None:
    prev, expect = b"", 1
    for stored in store.iter_changes(feed):
        body = codec.unpack(stored.body, max_bytes=MAX_CHANGE_BYTES)
        if stored.seq != expect or sha256(stored.body) != stored.hash or body[4] != prev:
            raise AssertionError(f"{name}: feed {feed[1]} by {feed[0].hex()[:8]} breaks its "
                                 f"hash chain at seq {stored.seq}")
        prev, expect = stored.hash, expect + 1


def state_diff(a: Node, b: Node) -> str:
    rows_a = {(r.partition, r.key): r.state for r in a.store.iter_records()}
    rows_b = {(r.partition, r.key): r.state for r in b.store.iter_records()}
    differ = sorted(k for k in rows_a.keys() | rows_b.keys() if rows_a.get(k) != rows_b.get(k))
    return f"{len(differ)} records differ, first {differ[:3]}"
