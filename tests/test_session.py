"""Pair tests of the sync session (h11's ConnectionPair shape): two real sessions joined by a fake
network (:class:`meshsync.testing.faults.SessionPair`), with drops and resets.

Field failures: B11 (an interrupted sync resumes where the receiver durably stopped),
B15 (a replayed frame is refused, nothing applied twice), B16 (only committed frames
are acknowledged). Every test runs on a memory and on a SQLite store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from helpers import HOUR_MS, START_MS, Device, all_changes, exchange

from meshsync.model.change import decode_body
from meshsync.model.errors import UsageError
from meshsync.protocol import frames as fr
from meshsync.protocol.events import ChangesApplied, Event, SessionDone, SessionFailed
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig, SessionError, State
from meshsync.testing.faults import Pipe, SessionPair, frame_message, split_frames

MakeDevice = Callable[..., Device]
TPS = "mimika/jila/diloa/tps-003"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def devices(make_device: MakeDevice, kind: str) -> Callable[..., Device]:
    """``devices(name)``: a device on this test's store kind, writing to ``TPS``."""
    return lambda name, **kw: make_device(name, kind, partition=TPS, **kw)


def open_pair(a: Device, b: Device, config_a: SessionConfig = CONFIG,
              config_b: SessionConfig = CONFIG) -> SessionPair:
    return SessionPair(Peer(a.node, config_a, now_ms=a.clock()),
                       Peer(b.node, config_b, now_ms=b.clock()), a.clock, b.clock)


def final(events: list[Event]) -> SessionDone | SessionFailed:
    """The one final event of a session."""
    ends = [e for e in events if isinstance(e, SessionDone | SessionFailed)]
    assert len(ends) == 1, events
    return ends[0]


def done(pair: SessionPair, side: int) -> SessionDone:
    end = final(pair.sides[side].events)
    assert isinstance(end, SessionDone), end
    return end


def failed(pair: SessionPair, side: int) -> SessionFailed:
    end = final(pair.sides[side].events)
    assert isinstance(end, SessionFailed), end
    return end


def write_voters(device: Device, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        device.put("voters", f"rec-{i:04d}", {"nama": f"Contoh {i}", "status": "aktif",
                                              "alamat": f"Kampung Uji RT {i % 7:02d}"})


def applied_frames(pair: SessionPair, side: int = 1) -> int:
    return sum(isinstance(e, ChangesApplied) for e in pair.sides[side].events)


def stored(device: Device) -> dict[tuple[bytes, str, int], tuple[bytes, bytes]]:
    """(author, partition, seq) -> (body, sig) of every change ``device`` holds."""
    return {(c.author, c.partition, c.seq): (c.body, c.sig) for c in all_changes(device)}


# -- the fake network itself ----------------------------------------------------------


def test_pipe_keeps_order_and_frame_boundaries() -> None:
    frames = [fr.encode_frame([fr.ACK, n]) for n in range(1, 6)]
    pipe = Pipe()
    pipe.write(b"".join(frames))
    assert pipe.pending == sum(map(len, frames))
    pipe.duplicate(2)
    out, copies = bytearray(), 0
    for size in (1, 3, 2, 50, 7, 1000):
        data, dup = pipe.read(size)
        out += data
        copies += dup
    assert bytes(out) == b"".join([*frames[:3], frames[2], *frames[3:]])
    assert copies == 1 and pipe.pending == 0 and pipe.history == frames
    with pytest.raises(ValueError):
        split_frames(frames[0][:-1])


def test_pipe_drop_and_cut() -> None:
    frames = [fr.encode_frame([fr.ACK, n]) for n in range(1, 4)]
    pipe = Pipe()
    pipe.write(b"".join(frames))
    pipe.read(2)
    assert pipe.mid_frame and pipe.unread_frames() == [1, 2]
    with pytest.raises(ValueError):
        pipe.drop(0)  # already started: dropping the rest would garble the stream
    assert pipe.drop(1) == frames[1]
    assert pipe.cut() == len(frames[0]) - 2 + len(frames[2])
    assert pipe.pending == 0


# -- the cheap case ------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 30])
def test_identical_peers_finish_in_one_round_trip(devices: Callable[..., Device],
                                                  count: int) -> None:
    a, b = devices("phone-A"), devices("phone-B")
    write_voters(a, count)
    exchange(a, b)
    pair = open_pair(a, b)
    pair.pump()
    for side in (0, 1):
        summary = done(pair, side).summary
        assert summary.converged
        assert summary.frames_sent <= 2 and summary.frames_received <= 2
        assert summary.changes_sent == summary.changes_received == 0
    assert [len(p.history) for p in pair.pipes] == [2, 2]  # HELLO + SUMMARY each way
    assert sum(p.bytes_written for p in pair.pipes) < 2048


def test_peers_that_differ_do_not_stop_at_the_summary(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("phone-B")
    write_voters(a, 3)
    pair = open_pair(a, b)
    pair.pump()
    assert done(pair, 1).summary.changes_received == 3
    assert done(pair, 0).summary.converged and done(pair, 1).summary.converged
    assert b.canonical_state() == a.canonical_state()


# -- multi-hop ------------------------------------------------------------------------


def test_multi_hop_keeps_the_authors_signatures(devices: Callable[..., Device]) -> None:
    a, b, c = devices("phone-A"), devices("phone-B"), devices("laptop-GW")
    write_voters(a, 12)
    a.delete("voters", "rec-0003")
    open_pair(a, b).pump()
    open_pair(b, c).pump()
    held_by_a = stored(a)
    assert stored(c) == held_by_a  # C got A's bodies and signatures, byte for byte
    for body, sig in held_by_a.values():
        decode_body(body, sig).verify()  # and they verify against A's key
    assert c.canonical_state() == a.canonical_state()
    assert c.get("voters", "rec-0003").deleted  # type: ignore[union-attr]


# -- resumption (B11, B16) --------------------------------------------------------------


@pytest.mark.parametrize("acked", [1, 3, 6])
@pytest.mark.parametrize("cut_mid_frame", [False, True])
def test_interrupted_sync_resumes_with_the_remainder(
        devices: Callable[..., Device], acked: int, cut_mid_frame: bool) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    total = 40
    write_voters(a, total)
    small = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila", window=2,
                          frame_target=300)
    pair = open_pair(a, b, small, small)
    # A's bytes go one at a time until B has committed `acked` frames; B's acks reach A.
    while applied_frames(pair) < acked:
        assert pair.deliver(0, 1) + pair.deliver(1, pair.pipes[1].pending or 1), "stalled"
    pair.deliver(1, pair.pipes[1].pending)
    if cut_mid_frame:
        pair.deliver(0, len(pair.pipes[0].frames[0].data) - 1)  # all but its last byte
        assert pair.pipes[0].mid_frame
    pair.reset()
    durable = b.store.count_changes()
    assert failed(pair, 1).summary.changes_received == durable
    assert 0 < durable < total
    assert failed(pair, 0).summary.changes_sent > durable  # frames in flight were lost

    second = open_pair(a, b, small, small)
    second.pump()
    assert done(second, 0).summary.changes_sent == total - durable
    assert done(second, 1).summary.changes_received == total - durable
    assert done(second, 1).summary.duplicates == 0
    assert b.store.count_changes() == total
    assert b.canonical_state() == a.canonical_state()


def test_dropped_frame_ends_the_session_with_only_whole_frames_stored(
        devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    write_voters(a, 20)
    small = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila", window=4,
                          frame_target=300)
    pair = open_pair(a, b, small, small)
    while applied_frames(pair) < 1:  # A's frames one by one until CHANGES(1) is in
        pair.deliver(1, pair.pipes[1].pending)
        pair.deliver_frame(0)
    pair.pipes[0].drop(0)  # CHANGES(2) is lost
    pair.pump()
    assert failed(pair, 1).reason.startswith("malformed or out-of-order changes frame")
    assert failed(pair, 0).by_peer
    applied = [e.report.applied for e in pair.sides[1].events if isinstance(e, ChangesApplied)]
    assert len(applied) == 1 and b.store.count_changes() == applied[0] > 0
    open_pair(a, b, small, small).pump()
    assert b.canonical_state() == a.canonical_state()


@pytest.mark.parametrize(("a_count", "b_count", "receipts"), [(10, 4, False), (2, 12, True)])
def test_every_duplicated_frame_is_refused(devices: Callable[..., Device], a_count: int,
                                           b_count: int, receipts: bool) -> None:
    """B15: a frame delivered twice fails the session; nothing is applied twice.

    With (2, 12) B is still streaming its own frames when A's SENT_ALL (and its copy)
    arrive, so the copy meets B in the streaming state; A also sends a custody receipt.
    """
    a, b = devices("phone-A"), devices("laptop-GW")
    write_voters(a, a_count)
    write_voters(b, b_count, start=100)
    small = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila", frame_target=300,
                          window=1)
    a_config = dataclasses.replace(small, role="gateway", issue_receipts=receipts)
    clean = open_pair(a, b, a_config, small)
    clean.pump()
    kinds = [frame_message(f)[0] for f in clean.pipes[0].history]
    assert fr.CHANGES in kinds and fr.ACK in kinds and len(kinds) >= 8
    assert (fr.RCPT in kinds) == receipts
    for index, kind in enumerate(kinds):
        a2, b2 = devices(f"phone-A{index}"), devices(f"laptop-GW{index}")
        write_voters(a2, a_count)
        write_voters(b2, b_count, start=100)
        pair = open_pair(a2, b2, a_config, small)
        for _ in range(index):  # A's frames one at a time, each answered in full
            pair.deliver(1, pair.pipes[1].pending)
            pair.deliver_frame(0)
        pair.deliver(1, pair.pipes[1].pending)
        pair.pipes[0].duplicate(0)
        while pair.can_deliver(0) or pair.can_deliver(1):  # the copy arrives on its own
            pair.deliver(1, pair.pipes[1].pending)
            pair.deliver_frame(0)
        assert pair.duplicates_accepted == 0, f"copy of {fr.NAMES[kind]} was accepted"
        if kind == fr.FIN:  # B was done when the copy came, and stopped reading
            assert done(pair, 1).summary.converged and pair.sides[1].discarded
            continue
        end = failed(pair, 1)
        assert end.stage == "protocol", (fr.NAMES[kind], end)
        applied = sum(e.report.applied for e in pair.sides[1].events
                      if isinstance(e, ChangesApplied))
        assert b2.store.count_changes() == b_count + applied  # each frame once or not at all


# -- refusals -------------------------------------------------------------------------


def test_incompatible_protocol_version_is_refused_on_both_sides(
        devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    newer = Peer(a.node, CONFIG, now_ms=a.clock())
    (hello,) = split_frames(newer.data_to_send())
    message = frame_message(hello)
    message[1]["proto"] = fr.PROTOCOL_VERSION + 1  # a newer device that still speaks v1
    pair = SessionPair(newer, Peer(b.node, CONFIG, now_ms=b.clock()), a.clock, b.clock)
    pair.pipes[0].write(fr.encode_frame(message))
    pair.pump()
    (error,) = pair.sides[1].errors
    assert isinstance(error, SessionError) and error.stage == "version"
    named = (f"meshsync protocol version {fr.PROTOCOL_VERSION} cannot sync with version "
             f"{fr.PROTOCOL_VERSION + 1}: upgrade meshsync on the device that speaks "
             f"version {fr.PROTOCOL_VERSION}")
    assert named in str(error)
    refused = failed(pair, 0)
    assert refused.by_peer and refused.stage == "version"
    assert named in refused.reason
    assert not failed(pair, 1).by_peer
    assert b.store.count_changes() == 0


def test_wrong_mesh_is_refused_on_both_sides(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("phone-B")
    write_voters(a, 3)
    other = SessionConfig(mesh_id="kpu-nabire", share_scope="mimika/jila")
    pair = open_pair(a, b, CONFIG, other)
    pair.pump()
    for side in (0, 1):  # each side checks the other's hello, so each detects it itself
        (error,) = pair.sides[side].errors
        assert error.stage == "mesh"
        assert "'kpu-mimika'" in str(error) and "'kpu-nabire'" in str(error)
        assert failed(pair, side).stage == "mesh"
    assert b.store.count_changes() == 0


def test_disjoint_shares_say_why_nothing_was_synced(devices: Callable[..., Device]) -> None:
    """Shares with nothing in common end unconverged with an error naming both."""
    a, b = devices("phone-A"), devices("phone-B")
    write_voters(a, 2)
    papua = SessionConfig(mesh_id="kpu-mimika", share_scope="papua")
    pair = open_pair(a, b, CONFIG, papua)
    pair.pump()
    for side in (0, 1):
        summary = done(pair, side).summary
        assert not summary.converged
        assert summary.error is not None
        assert "'mimika/jila'" in summary.error and "'papua'" in summary.error
    assert b.store.count_changes() == 0


def test_version_vector_with_a_negative_seq_is_refused(devices: Callable[..., Device]) -> None:
    """A negative seq once made a memory-store sender send only the feed's tail (a
    negative slice) while a SQLite one sent it all."""
    a, peer = devices("phone-A"), devices("phone-B")
    write_voters(a, 3)
    session = Peer(a.node, CONFIG, now_ms=a.clock())
    peer_session = Peer(peer.node, CONFIG, now_ms=peer.clock())
    session.receive_data(peer_session.data_to_send(), a.clock())
    session.receive_data(fr.encode_frame([fr.SUMMARY, [b"\x00" * 16] * 3, 0]), a.clock())
    with pytest.raises(SessionError, match="malformed version vector entry"):
        session.receive_data(fr.encode_frame(
            [fr.VV, [[a.key.public_key], [0, 0, TPS, -1], b"\x00" * 4], [], []]), a.clock())
    assert session.summary.changes_sent == 0


def test_oversized_frame_is_refused_from_its_header(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    pair = open_pair(a, b)
    pair.deliver(0, 10_000)  # A's hello reaches B
    session = pair.sessions[1]
    session.receive_data(fr.MAX_FRAME_BYTES.to_bytes(4, "big"), b.clock())
    assert not session.finished  # the largest allowed frame is awaited
    fresh = Peer(b.node, CONFIG, now_ms=b.clock())
    with pytest.raises(SessionError) as caught:
        fresh.receive_data((fr.MAX_FRAME_BYTES + 1).to_bytes(4, "big"), b.clock())
    assert caught.value.stage == "size"  # refused with no byte of payload sent
    assert "exceeds limit" in str(caught.value)
    frames = split_frames(fresh.data_to_send())
    assert frame_message(frames[-1])[:2] == [fr.ERROR, "size"]


def test_peer_closing_mid_session_is_an_error(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    write_voters(a, 5)
    pair = open_pair(a, b)
    pair.deliver(0, 10_000)
    with pytest.raises(SessionError, match="peer closed the connection"):
        pair.sessions[1].receive_data(b"", b.clock())
    with pytest.raises(UsageError):
        pair.sessions[1].receive_data(b"more", b.clock())


# -- timers ---------------------------------------------------------------------------


def test_handshake_timeout(devices: Callable[..., Device]) -> None:
    b = devices("laptop-GW")
    session = Peer(b.node, CONFIG, now_ms=START_MS)
    session.data_to_send()
    deadline = START_MS + CONFIG.handshake_timeout_ms
    assert session.get_timer() == deadline
    session.handle_timer(deadline - 1)
    assert not session.finished
    session.handle_timer(deadline)
    end = session.next_event()
    assert isinstance(end, SessionFailed) and end.stage == "timeout"
    assert "handshake timeout" in end.reason and end.summary.finished_ms == deadline
    assert session.get_timer() is None
    (frame,) = split_frames(session.data_to_send())
    assert frame_message(frame)[:2] == [fr.ERROR, "timeout"]


def test_trickled_hello_does_not_extend_the_handshake(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    hello = Peer(a.node, CONFIG, now_ms=START_MS).data_to_send()
    session = Peer(b.node, CONFIG, now_ms=START_MS)
    now = START_MS
    for sent in range(len(hello) - 1):  # a byte every 2 s: never silent, never complete
        now += 2000
        session.receive_data(hello[sent:sent + 1], now)
        session.handle_timer(now)
        if session.finished:
            break
    assert session.finished and now == START_MS + CONFIG.handshake_timeout_ms
    assert "handshake timeout" in (session.summary.error or "")


def test_idle_timeout_and_data_pushing_it_back(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A"), devices("laptop-GW")
    write_voters(a, 30)
    small = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila", frame_target=300)
    pair = open_pair(a, b, small, small)
    for _ in range(3):
        pair.deliver(0, 10_000)
        pair.deliver(1, 10_000)
    session = pair.sessions[1]
    assert session.state == State.SENT_ALL  # B had nothing to send; A's frames still come
    last_heard = b.clock()
    assert session.get_timer() == last_heard + small.idle_timeout_ms
    b.clock.advance(small.idle_timeout_ms - 1)
    pair.deliver(0, 5)  # a few bytes arrive just in time
    assert session.get_timer() == b.clock() + small.idle_timeout_ms
    pair.go_silent()
    b.clock.advance(small.idle_timeout_ms)
    assert pair.fire_timers() == 1
    end = failed(pair, 1)
    assert end.stage == "timeout" and "idle timeout while sent-all" in end.reason
    assert end.summary.finished_ms == b.clock()


# -- clocks ---------------------------------------------------------------------------


def test_peer_clock_three_hours_off_is_reported_on_both_sides(
        devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A", now_ms=START_MS + 3 * HOUR_MS), devices("laptop-GW")
    write_voters(a, 2)
    pair = open_pair(a, b)
    pair.pump()
    ahead, gateway = done(pair, 0).summary, done(pair, 1).summary
    assert gateway.clock_skew_ms == 3 * HOUR_MS and ahead.clock_skew_ms == -3 * HOUR_MS
    assert any("clock differs from ours by 10800 s" in w for w in gateway.clock_warnings)
    assert any("clock differs from ours by -10800 s" in w for w in ahead.clock_warnings)
    # A is told by its peer that its own clock is 3 h ahead (not behind).
    assert any("this device's clock is off by 10800 s" in w for w in ahead.clock_warnings)
    assert b.canonical_state() == a.canonical_state()


def test_small_skew_is_not_reported(devices: Callable[..., Device]) -> None:
    a, b = devices("phone-A", now_ms=START_MS + 60_000), devices("laptop-GW")
    pair = open_pair(a, b)
    pair.pump()
    assert done(pair, 0).summary.clock_warnings == []
    assert done(pair, 1).summary.clock_warnings == []
    assert done(pair, 1).summary.clock_skew_ms == 60_000
