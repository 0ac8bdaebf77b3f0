"""Compressed frames (protocol version 4), sans-I/O: the flag, the dictionary agreed in
the HELLO, the bound on what a frame may inflate to, and that each refusal names its
reason. The same cases over real TLS against ``meshsync serve`` are in
tests/test_net_sync.py (hostile peers) and tests/test_wire_version.py."""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Callable

import pytest
from helpers import Device

from meshsync.model.errors import DecodeError, FrameTooLargeError
from meshsync.protocol import frames as fr
from meshsync.protocol import messages as msg
from meshsync.protocol.events import SessionDone
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig, SessionError
from meshsync.protocol.zdict import DICTIONARIES, KNOWN_IDS, best_common
from meshsync.testing.faults import SessionPair, frame_message

MakeDevice = Callable[..., Device]
TPS = "mimika/jila/diloa/tps-003"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")
PLAIN = dataclasses.replace(CONFIG, compress=False)
ONE = fr.Compression.of(1)

#: SHA-256 of each released dictionary: its bytes never change (a new one gets a new id).
PINNED = {1: "4df241e15646800a0c9a4236298d1d8cbef204c328d90edbde61fdcafc6c8cbc"}


def changes_frame(n: int = 40) -> bytes:
    fields = {"nama": "Yosina Contoh", "status": "MS", "jenis_kelamin": "P"}
    return msg.encode(msg.Changes(1, [[4, 1000 + i, [[0, "voters", f"v-{i:07d}",
                                                      dict(fields), []]], b"s" * 64]
                                      for i in range(n)]))


def read(data: bytes, compression: fr.Compression | None = ONE,
         limit: int = fr.MAX_FRAME_BYTES) -> list[object]:
    reader = fr.FrameReader(limit)
    reader.compression = compression
    reader.feed(data)
    got = reader.next_message()
    assert got is not None
    return got[0]


def deflated(payload: bytes, dict_id: int = 1, zdict: bytes = ONE.zdict) -> bytes:
    deflate = zlib.compressobj(9, zdict=zdict)
    body = bytes((dict_id,)) + deflate.compress(payload) + deflate.flush()
    return (len(body) | fr.COMPRESSED).to_bytes(4, "big") + body


def test_released_dictionaries_never_change() -> None:
    assert {i: hashlib.sha256(d).hexdigest() for i, d in DICTIONARIES.items()} == PINNED
    assert KNOWN_IDS == (1,) and best_common((1,), (7, 1)) == 1
    assert best_common((1,), (7,)) is None and best_common((), (1,)) is None


def test_a_compressed_frame_reads_back_and_is_shorter() -> None:
    plain = changes_frame()
    packed = fr.compress_frame(plain, ONE)
    assert int.from_bytes(packed[:4], "big") & fr.COMPRESSED
    assert len(packed) < len(plain) // 3
    assert read(packed) == read(plain, None)


def test_only_frames_it_shortens_are_compressed() -> None:
    ack = msg.encode(msg.Ack(3))
    assert fr.compress_frame(ack, ONE) == ack  # too short to try
    blob = b"".join(hashlib.sha512(bytes([i])).digest() for i in range(4))
    noise = msg.encode(msg.Credentials((blob,)))
    assert fr.compress_frame(noise, ONE) == noise  # random bytes do not shrink
    assert fr.compress_frame(changes_frame(), None) == changes_frame()  # none agreed


def test_a_frame_that_inflates_past_the_limit_is_refused_as_size() -> None:
    payload = changes_frame()[4:]
    bomb = deflated(payload + bytes(64 * 1024))
    with pytest.raises(FrameTooLargeError, match="expands beyond the frame limit of 65536"):
        read(bomb, limit=64 * 1024)
    assert read(deflated(payload), limit=64 * 1024)[0] == fr.CHANGES  # control


@pytest.mark.parametrize(("data", "reason"), [
    (deflated(changes_frame()[4:], dict_id=7), "names dictionary 7; this session agreed "
                                               "on dictionary 1"),
    (deflated(changes_frame()[4:], zdict=b"another dictionary"), "not a valid zlib stream"),
    (deflated(changes_frame()[4:])[:-6] + b"\x00" * 6, "not a valid zlib|cut short"),
    (deflated(changes_frame()[4:] + b"\x00")[:60], "cut short or followed"),
])
def test_a_bad_compressed_frame_is_refused_as_decode(data: bytes, reason: str) -> None:
    if reason == "cut short or followed":  # a shorter stream in a frame of that length
        data = (len(data) - 4 | fr.COMPRESSED).to_bytes(4, "big") + data[4:]
    with pytest.raises(DecodeError, match=reason):
        read(data)


def test_a_compressed_frame_without_agreement_is_refused() -> None:
    with pytest.raises(DecodeError, match="agreed on no compression"):
        read(fr.compress_frame(changes_frame(), ONE), None)


def synced_pair(make_device: MakeDevice, laptop_config: SessionConfig
                ) -> tuple[SessionPair, Device]:
    """A phone holding 30 voters synced, sans I/O, with a laptop whose session config is
    ``laptop_config``; the pair (its frames kept) and the laptop device."""
    a, b = make_device("phone-A", partition=TPS), make_device("laptop-GW", partition=TPS)
    for i in range(30):
        a.put("voters", f"v-{i:04d}", {"nama": f"Contoh {i}", "status": "MS"})
    pair = SessionPair(Peer(a.node, CONFIG, now_ms=a.clock()),
                       Peer(b.node, laptop_config, now_ms=b.clock()), a.clock, b.clock)
    pair.pump()
    return pair, b


def test_the_hello_offers_its_dictionaries_and_both_agree(make_device: MakeDevice) -> None:
    pair, b = synced_pair(make_device, CONFIG)
    hello = frame_message(pair.pipes[0].history[0])
    assert hello[1]["zlib"] == [1] and hello[1]["proto"] == fr.PROTOCOL_VERSION == 4
    assert all(s.session.compression == ONE for s in pair.sessions)
    flags = [int.from_bytes(f[:4], "big") & fr.COMPRESSED for f in pair.pipes[0].history]
    assert not flags[0] and any(flags)  # HELLO plain, the CHANGES frame compressed
    assert all(isinstance(e, SessionDone) and e.summary.converged
               for side in pair.sides for e in side.events if isinstance(e, SessionDone))
    assert b.store.count_changes() == 30


def test_one_side_without_compression_makes_both_send_plain(make_device: MakeDevice) -> None:
    pair, b = synced_pair(make_device, PLAIN)
    assert frame_message(pair.pipes[1].history[0])[1]["zlib"] == []
    assert all(not int.from_bytes(f[:4], "big") & fr.COMPRESSED
               for pipe in pair.pipes for f in pipe.history)
    assert b.store.count_changes() == 30


def test_a_hello_with_malformed_dictionary_ids_is_refused() -> None:
    good = {"proto": fr.PROTOCOL_VERSION, "mesh": "kpu-mimika", "device": b"p" * 32,
            "role": "pantarlih", "scope": "mimika/jila", "clock_ms": 0}
    for zlib_ids in (None, "1", [0], [256], [True], list(range(1, 40))):
        with pytest.raises(SessionError, match="malformed hello"):
            msg.decode([fr.HELLO, {**good, "zlib": zlib_ids}])
