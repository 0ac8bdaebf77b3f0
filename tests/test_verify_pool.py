"""Signatures checked together, on several cores (meshsync.host.verify_pool, Receiver.verify_ahead).

A verifier may only make a batch faster, never different: the same changes are
applied, the same forgery refuses the whole batch with the same error, and a change
the store already holds is not checked again. The thread pool itself is checked on
real Ed25519 signatures, good and bad.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from helpers import FakeClock, device_key

from meshsync.host.verify_pool import ThreadVerifier, check_all
from meshsync.model.change import SIGN_CONTEXT, decode_stored
from meshsync.model.errors import RemoteError, StorageError
from meshsync.protocol.bundle import FOOTER, FOOTER_BYTES, MAGIC, export_bundle, import_bundle
from meshsync.replica.node import Node
from meshsync.replica.receive import VERIFY_AHEAD_BYTES, VERIFY_AHEAD_MIN, VERIFY_CHUNK
from meshsync.store import SQLiteStore

P = "mimika/jila/diloa/tps-003"


class CountingVerifier:
    """A verifier that checks for real (one thread) and remembers each call's size."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def submit(self, items: list[tuple[bytes, bytes, bytes]]) -> Callable[[], list[bool]]:
        self.calls.append(len(items))
        results = check_all(items)
        return lambda: results


def writer(n: int) -> Node:
    """A phone that wrote ``n`` one-record changes."""
    node = Node(SQLiteStore(":memory:"), device_key("phone-A"), FakeClock(),
                default_partition=P)
    for i in range(n):
        node.put("voters", f"v-{i:04d}", {"nama": f"Contoh {i}", "lahir": 1970 + i % 40})
    return node


def reader(verifier: Any = None) -> Node:
    node = Node(SQLiteStore(":memory:"), device_key("laptop"), FakeClock(),
                default_partition=P)
    node.verifier = verifier
    return node


def bundle_of(node: Node) -> bytes:
    out = io.BytesIO()
    export_bundle(node, out)
    return out.getvalue()


def forge_signature(data: bytes, index: int) -> bytes:
    """The bundle with the signature of its ``index``-th change flipped (checksum redone)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(data[len(MAGIC):-FOOTER_BYTES])
    items = list(unpacker)
    changes = [item for item in items if item[0] == 2]
    sig = bytearray(changes[index][3])
    sig[5] ^= 0x01
    changes[index][3] = bytes(sig)
    packer = msgpack.Packer(use_bin_type=True)
    body = MAGIC + b"".join(packer.pack(item) for item in items)
    return body + FOOTER + hashlib.sha256(body).digest()


def test_thread_verifier_matches_one_by_one_on_good_and_bad_signatures() -> None:
    key = device_key("phone-A")
    items = []
    for i in range(300):
        data = SIGN_CONTEXT + f"body {i}".encode()
        sig = key.sign(data)
        if i % 7 == 3:
            sig = sig[:10] + bytes([sig[10] ^ 0x40]) + sig[11:]
        items.append((key.public_key, sig, data))
    items.append((b"\x00" * 31, b"\x00" * 64, b"x"))  # malformed key: False, no exception
    pool = ThreadVerifier(workers=2)
    try:
        got = pool(items)
    finally:
        pool.close()
    assert got == check_all(items)
    assert got.count(False) == len(range(3, 300, 7)) + 1
    assert got[:3] == [True, True, True] and got[3] is False


def test_bundle_import_checks_signatures_in_batches_and_applies_the_same() -> None:
    data = bundle_of(writer(300))
    counting = CountingVerifier()
    with_pool, without = reader(counting), reader(None)
    import_bundle(with_pool, io.BytesIO(data))
    import_bundle(without, io.BytesIO(data))
    # All 300 new changes submitted at once, in chunks the pipeline waits for in turn.
    assert counting.calls == [VERIFY_CHUNK] * (300 // VERIFY_CHUNK) + [300 % VERIFY_CHUNK]
    assert with_pool.canonical_state() == without.canonical_state()
    assert with_pool.version_vector() == without.version_vector()
    # A replay: every change is already held, so none is checked again.
    import_bundle(with_pool, io.BytesIO(data))
    assert sum(counting.calls) == 300


@pytest.mark.parametrize("verifier", [None, CountingVerifier(), ThreadVerifier(workers=2)],
                         ids=["one-by-one", "batch", "threads"])
def test_forged_signature_refuses_the_whole_bundle_with_or_without_a_verifier(
        verifier: Any) -> None:
    forged = forge_signature(bundle_of(writer(40)), 30)
    node = reader(verifier)
    with pytest.raises(RemoteError) as info:
        import_bundle(node, io.BytesIO(forged))
    assert info.value.stage == "signature"
    assert "does not verify" in str(info.value)
    assert node.store.count_changes() == 0 and node.canonical_state() == b""


def test_small_batches_are_checked_one_by_one() -> None:
    counting = CountingVerifier()
    node = reader(counting)
    import_bundle(node, io.BytesIO(bundle_of(writer(VERIFY_AHEAD_MIN - 1))))
    assert counting.calls == []
    assert node.store.count_changes() == VERIFY_AHEAD_MIN - 1


def test_session_batches_use_the_verifier() -> None:
    source = writer(50)
    counting = CountingVerifier()
    node = reader(counting)
    report = node.receive(list(source.changes_since({})))
    assert report.applied == 50 and sum(counting.calls) == 50


def big_change_node() -> tuple[Node, Any]:
    """A phone whose one change (300 records) is past VERIFY_AHEAD_BYTES."""
    node = Node(SQLiteStore(":memory:"), device_key("phone-A"), FakeClock(),
                default_partition=P)
    change = node.write(P, [("put", "voters", f"v-{i:04d}",
                             {"nama": f"Contoh Uji {i}", "alamat": "Jalan Uji " * 8})
                            for i in range(300)])
    assert len(change.body) >= VERIFY_AHEAD_BYTES
    return node, change


@pytest.mark.parametrize("forged", [False, True], ids=["good", "forged"])
def test_one_large_change_is_checked_on_the_verifier_while_the_pipeline_runs(
        forged: bool) -> None:
    _, change = big_change_node()
    if forged:
        sig = bytearray(change.sig)
        sig[7] ^= 0x10
        change = decode_stored(change.body, bytes(sig), change.hash)
    counting = CountingVerifier()
    node = reader(counting)
    clock_before = node.hlc.last
    if not forged:
        assert node.receive([change]).applied == 1
        assert counting.calls == [1] and node.store.count_changes() == 1
        return
    with pytest.raises(RemoteError) as info:
        node.receive([change])
    assert counting.calls == [1]  # the check ran beside the pipeline, then failed
    assert info.value.stage == "signature"
    assert node.store.count_changes() == 0 and node.canonical_state() == b""
    assert node.hlc.last == clock_before  # a forged change never moves the clock


class FailingSecondTrust:
    """Authorizes everything, but fails (a local fault) on a change's seq 2."""

    def authorize_change(self, author: bytes, partition: str, seq: int, wall_ms: int) -> None:
        if seq == 2:
            raise StorageError("the trust database went away")


def test_a_forgery_checked_beside_the_pipeline_is_reported_before_a_later_fault() -> None:
    writer_node, big = big_change_node()
    small = writer_node.put("voters", "v-9999", {"nama": "Contoh Akhir"})
    sig = bytearray(big.sig)
    sig[3] ^= 0x01
    forged = decode_stored(big.body, bytes(sig), big.hash)
    node = Node(SQLiteStore(":memory:"), device_key("laptop"), FakeClock(),
                trust=FailingSecondTrust(), default_partition=P)  # type: ignore[arg-type]
    node.verifier = CountingVerifier()
    with pytest.raises(RemoteError) as info:  # not the StorageError of change 2
        node.receive([forged, small])
    assert info.value.stage == "signature"
    assert node.store.count_changes() == 0
