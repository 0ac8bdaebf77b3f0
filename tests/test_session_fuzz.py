"""Fuzzing the sync session (garbage may only ever raise the peer's error; docs/protocol.md).

Random frames, and a real recorded transcript with bytes flipped, inserted or deleted and
messages replaced, duplicated, swapped, dropped or cut short, are fed to a fresh session.

* The only exception ``receive_data`` may raise for what the peer sent is
  :class:`meshsync.protocol.session.SessionError`.
* No partial apply: afterwards the receiving store holds its own changes plus whole
  frames' worth of the peer's (every frame all or nothing), every feed is a hash chain
  of genuinely signed changes, its records equal a fresh replay of exactly those changes,
  and its clock did not keep anything from a frame that was rolled back.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import START_MS, Device, FakeClock, all_changes, device_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsync.model.change import Change, decode_body
from meshsync.model.errors import DecodeError
from meshsync.protocol import frames as fr
from meshsync.protocol.events import ChangesApplied, Event, SessionDone, SessionFailed
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig, SessionError
from meshsync.protocol.stream import SessionDecoder
from meshsync.replica.node import Node
from meshsync.store import MemoryStore, SQLiteStore, Store
from meshsync.testing.faults import SessionPair, frame_message, split_frames

TPS = "mimika/jila/diloa/tps-003"
OTHER_TPS = "mimika/jila/amua/tps-007"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila", window=2,
                       frame_target=400)
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Recording:
    """A clean session from phone-A (sender of ``frames``) to laptop-GW."""

    frames: tuple[bytes, ...]
    template: MemoryStore  # laptop-GW's store before the session
    initial: frozenset[bytes]  # hashes of laptop-GW's own changes
    known: frozenset[bytes]  # hashes of every genuine change of either device
    frame_changes: tuple[frozenset[bytes], ...]  # per CHANGES frame of A: change hashes
    a_key: bytes
    b_key: bytes


@functools.cache
def recording() -> Recording:
    # A's clock runs 5 minutes ahead, so every change A sends moves B's clock forward:
    # a rolled-back frame that left its mark on B's clock would show.
    a = Device.memory("phone-A", partition=TPS, now_ms=START_MS + 5 * 60_000)
    b = Device.memory("laptop-GW", partition=TPS)
    a.write(OTHER_TPS, [("put", "voters", f"rec-{i:04d}", {"status": "pindah"})
                        for i in range(3)])
    for i in range(14):
        a.put("voters", f"rec-{i:04d}", {"nama": f"Contoh {i}", "status": "aktif", "rt": i})
    for i in range(6):  # edits of seen records: their ops carry preds
        a.put("voters", f"rec-{i:04d}", {"status": "pindah", "rt": 20 + i})
    a.delete("voters", "rec-0004")
    a.put("voters", "rec-0004", {"status": "kembali"})  # restores the deleted record
    for i in range(5):
        b.put("voters", f"rec-{i:04d}", {"status": "ganda", "alamat": "Kampung Uji"})
    # B already holds the start of A's feed in TPS: A's stream names that feed by B's
    # VV index with a short feed item (meshsync.protocol.stream).
    b.node.receive([c for c in all_changes(a) if c.partition == TPS][:6])
    template = copy.deepcopy(b.store)
    initial = frozenset(c.hash for c in all_changes(b))
    pair = SessionPair(Peer(a.node, CONFIG, now_ms=START_MS),
                       Peer(b.node, CONFIG, now_ms=START_MS), a.clock, b.clock)
    pair.pump()
    assert isinstance(pair.sides[1].events[-1], SessionDone)
    frames = tuple(pair.pipes[0].history)
    receiving = pair.sessions[1]
    decoder, per_frame = SessionDecoder(receiving.session.holdings), []
    for frame in frames:
        message = frame_message(frame)
        if message[0] == fr.CHANGES:
            decoded = (decoder.decode(item) for item in message[2])
            per_frame.append(frozenset(c.hash for c in decoded if c is not None))
    assert len(per_frame) >= 4, "the transcript should span several CHANGES frames"
    known = initial | frozenset(c.hash for c in all_changes(a))
    return Recording(frames, template, initial, known, tuple(per_frame),
                     a.key.public_key, b.key.public_key)


@dataclass
class Receiver:
    node: Node
    session: Peer
    events: list[Event]
    errors: list[SessionError]
    output: bytes = b""


def fresh_receiver(store: Store | None = None) -> Receiver:
    rec = recording()
    node = Node(store or copy.deepcopy(rec.template), device_key("laptop-GW"),
                FakeClock(START_MS), default_partition=TPS)
    session = Peer(node, CONFIG, now_ms=START_MS)
    session.data_to_send()
    return Receiver(node, session, [], [])


def feed(receiver: Receiver, data: bytes, pieces: list[int] | None = None) -> Receiver:
    """Feed ``data`` in pieces of the given sizes (cycled), then EOF; stop once finished.

    Any exception other than SessionError propagates and fails the test.
    """
    sizes = pieces or [len(data) or 1]
    at, turn = 0, 0
    while not receiver.session.finished:
        size = sizes[turn % len(sizes)]
        chunk = data[at:at + size]
        at, turn = at + size, turn + 1
        try:
            receiver.session.receive_data(chunk, START_MS)  # b"" once data runs out: EOF
        except SessionError as exc:
            receiver.errors.append(exc)
        if not chunk:
            break
    receiver.output += receiver.session.data_to_send()
    event = receiver.session.next_event()
    while event is not None:
        receiver.events.append(event)
        event = receiver.session.next_event()
    return receiver


def stored_changes(node: Node) -> list[Change]:
    return list(node.changes_since({}))


def check_no_partial_apply(receiver: Receiver) -> None:
    rec, node = recording(), receiver.node
    assert receiver.session.finished
    changes = stored_changes(node)
    hashes = {c.hash for c in changes}
    # Only genuine changes, in hash chains, each verified against its author's key.
    assert hashes <= rec.known, "a change nobody signed was stored"
    assert rec.initial <= hashes, "the receiver lost its own changes"
    for info in node.store.feeds():
        prev = b""
        for seq, stored in enumerate(node.store.iter_changes(info.feed), start=1):
            change = decode_body(stored.body, stored.sig)
            change.verify()
            assert (change.seq, change.prev, change.hash) == (seq, prev, stored.hash)
            prev = change.hash
    # Whole frames only: each of A's frames is in entirely or not at all, but for a
    # frame whose ACK asked for a feed in full (a short feed item whose prev did not
    # match: that section was skipped, as a fork's would be).
    sent = (frame_message(f) for f in
            split_frames(receiver.output))
    asked = {m[1] for m in sent if m[0] == fr.ACK and len(m) == 3}
    for number, carried in enumerate(rec.frame_changes, start=1):
        new = carried - rec.initial
        assert not new & hashes or new <= hashes or number in asked, \
            f"CHANGES frame {number} partly stored"
    applied = sum(e.report.applied for e in receiver.events if isinstance(e, ChangesApplied))
    assert len(hashes) == len(rec.initial) + applied
    # The records are exactly what the stored changes make.
    reference = Node(MemoryStore(), device_key("reference"), FakeClock(START_MS))
    reference.receive(changes)
    assert node.canonical_state() == reference.canonical_state()
    # The clock kept nothing from a rolled-back frame.
    assert node.hlc.last == int.from_bytes(node.store.get_meta("hlc") or b"", "big")
    # A session that refused input told the peer why, in an ERROR frame.
    end = receiver.events[-1]
    assert isinstance(end, SessionDone | SessionFailed)
    if isinstance(end, SessionFailed) and not end.by_peer:
        last = split_frames(receiver.output)[-1]
        assert frame_message(last)[0] == fr.ERROR


# -- the baseline: an unmutated transcript replays to the same result ------------------


def test_recorded_transcript_replays_cleanly() -> None:
    rec = recording()
    receiver = feed(fresh_receiver(), b"".join(rec.frames), [7, 300, 1, 4096])
    assert receiver.errors == []
    end = receiver.events[-1]
    assert isinstance(end, SessionDone) and end.summary.converged
    assert {c.hash for c in stored_changes(receiver.node)} == rec.known
    check_no_partial_apply(receiver)
    sent = [frame_message(f) for f in rec.frames]
    assert sum(i[0] == 3 for m in sent if m[0] == fr.CHANGES for i in m[2]) == 1  # B's feed


# -- strategies ----------------------------------------------------------------------

# Hypothesis rarely draws the extremes of a 128-bit-wide range by itself: name them.
EXTREMES = [-(2**63), -(2**31), -1, 2**31, 2**48, 2**63 - 1, 2**63, 2**64 - 1]
INTS = st.sampled_from(EXTREMES) | st.integers(-3, 20) | st.integers(-(2**63), 2**64 - 1)
SCALARS = (st.none() | st.booleans() | INTS | st.floats() | st.text(max_size=12)
           | st.binary(max_size=40))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6) | st.binary(max_size=4), inner,
                                        max_size=4), max_leaves=12)


def keys() -> st.SearchStrategy[bytes]:
    rec = recording()
    return st.sampled_from([rec.a_key, rec.b_key]) | st.binary(min_size=32, max_size=32)


def _list(*parts: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.tuples(*parts).map(list)


PARTITIONS = st.sampled_from([TPS, OTHER_TPS, "mimika/jila", "mimika/agimuga/x", "Bad/Part"])
PRED = st.lists(_list(INTS, st.integers(-1, 3)), max_size=3)
OPS = st.lists(_list(st.just(0), st.text(max_size=8), st.text(max_size=8),
                     st.dictionaries(st.text(max_size=6), VALUES, max_size=3), PRED)
               | _list(st.just(1), st.text(max_size=8), st.text(max_size=8), PRED), max_size=2)


NAME = st.integers(-1, 6) | st.text(max_size=8)
COMPACT_OPS = st.lists(_list(st.just(0), NAME, st.text(max_size=8),
                             st.lists(NAME | VALUES, max_size=9), PRED)
                       | _list(st.just(1), NAME, st.text(max_size=8), PRED), max_size=2)


def wire_items() -> st.SearchStrategy[Any]:
    return st.one_of(_list(st.just(0), keys()),
                     _list(st.just(1), st.integers(-1, 3), PARTITIONS, INTS,
                           st.binary(max_size=33)),
                     _list(st.just(3), st.integers(-1, 3) | INTS, st.binary(max_size=9)),
                     _list(st.just(2), INTS, OPS, st.binary(min_size=64, max_size=64)
                           | st.binary(max_size=70)),
                     _list(st.just(4), INTS, COMPACT_OPS, st.binary(min_size=64, max_size=64)),
                     VALUES)


def version_vectors() -> st.SearchStrategy[list[Any]]:
    """Compact VV tables (meshsync.protocol.meta): authors, then 4 values per feed."""
    entry = st.tuples(st.integers(-1, 2), st.integers(-1, 30),
                      st.sampled_from(["", "3", "7", "x", "/tps-004"]) | PARTITIONS, INTS)
    flat = st.lists(entry, max_size=4).map(lambda es: [v for e in es for v in e])
    return _list(st.lists(keys(), max_size=2), flat | st.lists(VALUES, max_size=5))


def compact_receipts() -> st.SearchStrategy[list[Any]]:
    delta = st.lists(_list(st.integers(-1, 4), INTS) | _list(keys(), PARTITIONS, INTS), max_size=3)
    return _list(INTS, delta, st.binary(min_size=64, max_size=64))


@st.composite
def hellos(draw: st.DrawFn) -> dict[str, Any]:
    """A valid hello with up to two fields replaced or added (so the later checks are
    reached too)."""
    hello: dict[str, Any] = {"proto": fr.PROTOCOL_VERSION, "mesh": "kpu-mimika",
                             "device": recording().a_key, "role": "pantarlih",
                             "scope": "mimika/jila", "clock_ms": START_MS, "zlib": [1]}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*sorted(hello), "extra"]))
        hello[name] = draw(INTS if type(hello.get(name)) is int else keys() | VALUES)
    return hello


def messages() -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        _list(st.just(fr.HELLO), hellos()),
        _list(st.just(fr.SUMMARY), st.lists(st.binary(min_size=15, max_size=17), max_size=4)
              | st.binary(max_size=20), INTS),
        _list(st.just(fr.VV), st.none() | version_vectors(),
              st.none() | st.lists(st.binary(max_size=20), max_size=3),
              st.none() | st.lists(st.binary(max_size=20), max_size=3)),
        _list(st.sampled_from([fr.CRED, fr.RCPT]),
              st.lists(st.binary(max_size=60) | compact_receipts() | VALUES, max_size=3)),
        _list(st.just(fr.CHANGES), st.integers(-1, 6) | INTS,
              st.lists(wire_items(), max_size=6)),
        _list(st.sampled_from([fr.ACK, fr.SENT_ALL]), st.integers(-1, 6) | INTS),
        _list(st.just(fr.ACK), st.integers(-1, 6),
              st.lists(st.integers(-1, 4) | VALUES, max_size=3)),
        _list(st.just(fr.FIN), st.binary(max_size=20) | VALUES),
        _list(st.just(fr.ERROR), VALUES, VALUES),
        st.lists(VALUES, min_size=1, max_size=4))


PIECES = st.lists(st.integers(1, 600), min_size=1, max_size=5)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a decoded message (lists by index, maps by key)."""
    out = [path]
    children = enumerate(value) if type(value) is list else \
        value.items() if type(value) is dict else ()
    for key, child in children:
        out += _paths(child, (*path, key))
    return out


def _with(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copied = copy.copy(value)
    copied[path[0]] = _with(value[path[0]], path[1:], new)
    return copied


def _replace_inside(draw: st.DrawFn, frame: bytes) -> bytes:
    """The frame's message with one value somewhere inside it replaced (structure-aware;
    an integer mostly by another integer, so decoding goes deeper)."""
    try:
        message = frame_message(frame)
    except DecodeError:
        return frame
    path = draw(st.sampled_from(_paths(message)[1:] or [()]))
    old = _at(message, path)
    new = draw(INTS if type(old) is int and draw(st.booleans()) else VALUES)
    return fr.encode_frame(_with(message, path, new))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_transcripts(draw: st.DrawFn) -> bytes:
    frames = list(recording().frames)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(frames) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "replace", "inside",
                                     "duplicate", "swap", "drop", "truncate"]))
        frame = frames[i]
        at = draw(st.integers(0, max(0, len(frame) - 1)))
        if kind == "inside":
            frames[i] = _replace_inside(draw, frame)
        elif kind == "flip" and frame:
            frames[i] = frame[:at] + bytes([frame[at] ^ 1 << draw(st.integers(0, 7))]) \
                + frame[at + 1:]
        elif kind == "insert":
            frames[i] = frame[:at] + draw(st.binary(min_size=1, max_size=8)) + frame[at:]
        elif kind == "delete":
            frames[i] = frame[:at] + frame[at + draw(st.integers(1, 8)):]
        elif kind == "replace":
            frames[i] = fr.encode_frame(draw(messages()))
        elif kind == "duplicate":
            frames.insert(i, frame)
        elif kind == "swap":
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frame
        elif kind == "drop" and len(frames) > 1:
            del frames[i]
        elif kind == "truncate":
            frames[i:] = [frame[:at]]
    return b"".join(frames)


# -- properties -----------------------------------------------------------------------


@FUZZ
@given(data=mutated_transcripts(), pieces=PIECES)
def test_mutated_transcript_fails_cleanly_and_applies_whole_frames(
        data: bytes, pieces: list[int]) -> None:
    check_no_partial_apply(feed(fresh_receiver(), data, pieces))


def _cut_points() -> list[int]:
    """Prefix lengths of the transcript that leave the receiver in each of its states."""
    count = len(recording().frames)
    return sorted({0, 1, 2, 3, 4, count // 2, count - 2, count - 1})


@FUZZ
@given(data=st.data(), message=messages(), pieces=PIECES)
def test_any_message_in_any_state(data: st.DataObject, message: list[Any],
                                  pieces: list[int]) -> None:
    """The valid transcript up to some point (any state), one arbitrary message, the rest."""
    frames = list(recording().frames)
    cut = data.draw(st.sampled_from(_cut_points()))
    stream = b"".join([*frames[:cut], fr.encode_frame(message), *frames[cut:]])
    check_no_partial_apply(feed(fresh_receiver(), stream, pieces))


@FUZZ
@given(data=st.data(), pieces=PIECES)
def test_changes_frames_with_a_value_changed(data: st.DataObject, pieces: list[int]) -> None:
    """One value inside one CHANGES frame replaced: the decoder, the signature check and
    the apply all see near-valid input."""
    frames = list(recording().frames)
    index = data.draw(st.sampled_from([i for i, f in enumerate(frames) if f[5] == fr.CHANGES]))
    frames[index] = _replace_inside(data.draw, frames[index])
    check_no_partial_apply(feed(fresh_receiver(), b"".join(frames), pieces))


@settings(FUZZ, max_examples=600)
@given(hello=hellos(), pieces=PIECES)
def test_any_hello(hello: dict[str, Any], pieces: list[int]) -> None:
    stream = fr.encode_frame([fr.HELLO, hello]) + b"".join(recording().frames[1:])
    check_no_partial_apply(feed(fresh_receiver(), stream, pieces))


@FUZZ
@given(garbage=st.binary(max_size=300), framed=st.booleans(), pieces=PIECES)
def test_garbage_bytes(garbage: bytes, framed: bool, pieces: list[int]) -> None:
    hello = recording().frames[0]
    body = len(garbage).to_bytes(4, "big") + garbage if framed else garbage
    receiver = feed(fresh_receiver(), hello + body, pieces)
    assert receiver.session.finished
    check_no_partial_apply(receiver)


# -- targeted: a forged signature inside a CHANGES frame ------------------------------


def _sig_forgeries() -> list[tuple[int, int]]:
    """(frame index, item index) of every change item in A's CHANGES frames."""
    out = []
    for index, frame in enumerate(recording().frames):
        message = frame_message(frame)
        if message[0] == fr.CHANGES:
            out += [(index, k) for k, item in enumerate(message[2]) if item[0] in (2, 4)]
    return out


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_forged_signature_keeps_its_whole_frame_out(store_kind: str) -> None:
    rec = recording()
    forgeries = _sig_forgeries()
    assert len(forgeries) >= 8
    for frame_index, item_index in forgeries:
        frames = list(rec.frames)
        message = frame_message(frames[frame_index])
        # re-encoding is exact (a compressed frame goes back uncompressed: allowed)
        assert frame_message(fr.encode_frame(message)) == message
        sig = bytearray(message[2][item_index][3])
        sig[10] ^= 0x01
        message[2][item_index][3] = bytes(sig)
        frames[frame_index] = fr.encode_frame(message)
        store = _store_like_template(store_kind)
        receiver = feed(fresh_receiver(store), b"".join(frames), [1000])
        (error,) = receiver.errors
        assert error.stage == "signature", (frame_index, item_index, error)
        number = sum(frame_message(f)[0] == fr.CHANGES
                     for f in rec.frames[:frame_index + 1])
        held = {c.hash for c in stored_changes(receiver.node)}
        assert not (rec.frame_changes[number - 1] - rec.initial) & held
        for earlier in rec.frame_changes[:number - 1]:  # earlier frames were committed
            assert earlier <= held
        check_no_partial_apply(receiver)


def _store_like_template(kind: str) -> Store:
    rec = recording()
    if kind == "memory":
        return copy.deepcopy(rec.template)
    store = SQLiteStore(":memory:")
    loader = Node(store, device_key("laptop-GW"), FakeClock(START_MS))
    loader.receive(stored_changes(Node(copy.deepcopy(rec.template), device_key("x"),
                                       FakeClock(START_MS))))
    return store


# -- regressions the fuzzer found -----------------------------------------------------


@pytest.mark.parametrize("message", [
    [[1], 2],  # an unhashable message type: TypeError in the frame reader
    [fr.HELLO, {"proto": fr.PROTOCOL_VERSION, "mesh": "kpu-mimika", "device": b"k" * 32,
                "role": "pantarlih", "scope": "mimika/jila", "clock_ms": 2**64 - 1}],
])
def test_regression_inputs_raise_only_session_error(message: list[Any]) -> None:
    receiver = fresh_receiver()
    with pytest.raises(SessionError):
        receiver.session.receive_data(fr.encode_frame(message), START_MS)


def test_regression_pred_out_of_range_is_a_decode_error() -> None:
    """A pred whose hlc difference lands outside 64 bits made msgpack overflow."""
    rec = recording()
    frames = list(rec.frames)
    for index, frame in enumerate(frames):
        message = frame_message(frame)
        puts = [item for item in (message[2] if message[0] == fr.CHANGES else [])
                if item[0] in (2, 4) and item[2][0][0] == 0 and item[2][0][4]]
        if puts:
            puts[0][2][0][4][0][0] = 2**64 - 1
            frames[index] = fr.encode_frame(message)
            break
    else:
        pytest.fail("the transcript has no put with a pred")
    receiver = feed(fresh_receiver(), b"".join(frames), [100_000])
    (error,) = receiver.errors
    assert error.stage == "decode" and "pred hlc out of range" in str(error)
    check_no_partial_apply(receiver)

