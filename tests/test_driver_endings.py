"""How the trio driver (meshsync.net.driver) ends a session: peer errors, EOF, resets,
timeouts and our own failed writes, with read-ahead on (a newcomer review's probes).

A scripted peer stream plays bytes a real peer would send (its HELLO, then an ERROR
frame) and then ends with EOF, a reset or silence. The peer's reason must survive
whatever happens to the connection afterwards, even when our own writes fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import trio
import trio.testing
from driverpair import PassThroughStream, run_pair, session
from helpers import Device

from meshsync.net.driver import now_ms, run_session
from meshsync.protocol import frames as fr
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig

MakeDevice = Callable[..., Device]
TPS = "mimika/jila/diloa/tps-003"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")
SHORT = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila",
                      handshake_timeout_ms=300, idle_timeout_ms=300)
PEER_ERROR = fr.encode_frame([fr.ERROR, "storage", "disk full on the phone"])


class ScriptedPeer(trio.abc.Stream):
    """Gives the session ``chunks``, then ``end``: "eof", "reset" or "hang".
    ``fail_sends_after``: our writes after that many raise a broken pipe."""

    def __init__(self, chunks: list[bytes], end: str, *, fail_sends_after: int | None = None,
                 delay: float = 0.01) -> None:
        self.chunks, self.end, self.delay = list(chunks), end, delay
        self.fail_sends_after, self.sends = fail_sends_after, 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        if self.fail_sends_after is not None and self.sends > self.fail_sends_after:
            raise trio.BrokenResourceError("broken pipe")

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep(self.delay)
        if self.chunks:
            return self.chunks.pop(0)
        if self.end == "eof":
            return b""
        if self.end == "reset":
            raise trio.BrokenResourceError("connection reset by peer")
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


def hello_of(device: Device) -> bytes:
    return fr.encode_frame([fr.HELLO, {
        "proto": fr.PROTOCOL_VERSION, "mesh": "kpu-mimika", "device": device.node.key.public_key,
        "role": "pantarlih", "scope": "mimika/jila", "clock_ms": now_ms(), "zlib": []}])


def run(me: Device, peer: ScriptedPeer, config: SessionConfig = CONFIG) -> str:
    """The session's error after running against ``peer``."""
    async def main() -> Peer:
        session = Peer(me.node, config, now_ms=now_ms())
        with trio.fail_after(20):
            await run_session(peer, session, trio.CapacityLimiter(1))
        return session
    session = trio.run(main)
    assert session.finished
    return session.summary.error or ""


@pytest.fixture
def pair(make_device: MakeDevice) -> tuple[Device, Device]:
    return (make_device("laptop", "sqlite", partition=TPS),
            make_device("phone", "memory", partition=TPS))


@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "two-chunks"])
@pytest.mark.parametrize("end", ["eof", "reset"])
def test_the_peers_error_is_reported_however_the_connection_ends(
        pair: tuple[Device, Device], split: bool, end: str) -> None:
    me, phone = pair
    chunks = [hello_of(phone), PEER_ERROR] if split else [hello_of(phone) + PEER_ERROR]
    assert "disk full on the phone" in run(me, ScriptedPeer(chunks, end))


@pytest.mark.parametrize("delay", [0.01, 0.0], ids=["slow-peer", "read-ahead"])
def test_the_peers_error_survives_our_failed_write(
        pair: tuple[Device, Device], delay: float) -> None:
    me, phone = pair
    peer = ScriptedPeer([hello_of(phone), PEER_ERROR], "eof", fail_sends_after=1, delay=delay)
    assert "disk full on the phone" in run(me, peer)


@pytest.mark.parametrize(("end", "expected"), [("eof", "closed"), ("reset", "connection lost")])
def test_the_connection_ending_mid_session_is_named(
        pair: tuple[Device, Device], end: str, expected: str) -> None:
    me, phone = pair
    assert expected in run(me, ScriptedPeer([hello_of(phone)], end))


def test_a_silent_or_trickling_peer_hits_the_handshake_timeout(
        pair: tuple[Device, Device]) -> None:
    me, phone = pair
    assert "handshake timeout" in run(me, ScriptedPeer([], "hang"), SHORT)
    hello = hello_of(phone)
    trickle = [hello[i:i + 1] for i in range(len(hello) - 1)]
    assert "handshake timeout" in run(me, ScriptedPeer(trickle, "hang"), SHORT)


def test_a_peer_gone_quiet_after_hello_hits_the_idle_timeout(
        pair: tuple[Device, Device]) -> None:
    me, phone = pair
    assert "idle timeout" in run(me, ScriptedPeer([hello_of(phone)], "hang"), SHORT)


class DeafPeer(ScriptedPeer):
    """Sends its HELLO, then reads nothing: our writes block (a full TCP window)."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        if self.sends > 1:
            await trio.sleep_forever()


def test_a_peer_that_stops_reading_ends_the_session(pair: tuple[Device, Device]) -> None:
    me, phone = pair
    error = run(me, DeafPeer([hello_of(phone)], "hang"), SHORT)
    assert "the peer read nothing for 0.3 s" in error or "idle timeout" in error, error


class ClockJumpingPeer(ScriptedPeer):
    """Sends its HELLO, then nothing; 100 ms later sets the wall clock an hour back
    (an officer correcting the phone's clock while the session waits)."""

    def __init__(self, chunks: list[bytes], jump: list[int]) -> None:
        super().__init__(chunks, "hang")
        self.jump = jump

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self.chunks:
            await trio.sleep(0.1)
            self.jump[0] = -3600 * 1_000_000_000
        return await super().receive_some(max_bytes)


def test_the_idle_timeout_ignores_the_wall_clock_set_back(
        pair: tuple[Device, Device], monkeypatch: pytest.MonkeyPatch) -> None:
    me, phone = pair
    jump = [0]
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + jump[0])
    assert "idle timeout" in run(me, ClockJumpingPeer([hello_of(phone)], jump), SHORT)


class SlowLink(PassThroughStream):
    """Passes our writes on at 200 KB/s in 4 KiB pieces: a slow radio link whose
    far end reads all the time."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        for i in range(0, len(data), 4096):
            await trio.sleep(len(data[i:i + 4096]) / 200_000)
            await self.inner.send_all(data[i:i + 4096])


def test_a_slow_link_that_keeps_reading_is_not_cut(make_device: MakeDevice) -> None:
    sender = make_device("phone-A", "sqlite", partition=TPS)
    receiver = make_device("laptop", "sqlite", partition=TPS)
    for start in range(0, 3000, 200):  # ~800 KB: single writes far over 200 KB (1 s)
        sender.node.write(TPS, [("put", "voters", f"v-{i:05d}",
                                 {"nama": f"Contoh {i}", "alamat": "Jalan Uji " * 4})
                                for i in range(start, start + 200)])
    config = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila",
                           idle_timeout_ms=1000)
    a, b = session(sender.node, config), session(receiver.node, config)
    run_pair(a, b, wrap_a=SlowLink, timeout_s=60)
    assert a.summary.converged and b.summary.converged, (a.summary.error, b.summary.error)
