"""Drive a :class:`~meshsync.protocol.peer.Peer` (a node's end of a sync session) over a
trio stream.

The adapter is thin (httpcore's shape): a receiver task feeds bytes to the session and a
sender task drains what the session wants to send, so neither side can deadlock
with both ends blocked in ``send_all``. The session itself is pure; what its input
makes the owner do on the node (signature checks, SQLite commits) runs in a worker
thread under a per-node limiter, so one slow peer never blocks the others' trio tasks
and the node is used by one thread at a time.
"""

from __future__ import annotations

import logging
import ssl
import time

import trio

from meshsync.model.errors import MeshsyncError, StorageError
from meshsync.model.identity import short_id
from meshsync.net.errors import TransportError
from meshsync.net.tls import describe_ssl_error
from meshsync.protocol.events import SessionSummary
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionError

log = logging.getLogger("meshsync.net")

RECEIVE_CHUNK = 64 * 1024
#: Bytes per write; each must go out within the idle timeout (see ``_Pump._send``).
SEND_PIECE = 64 * 1024
#: Chunks the reader may read ahead of the session (at most ~2 MiB buffered).
READ_AHEAD_CHUNKS = 32


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the I/O edge may read the clock)."""
    return time.time_ns() // 1_000_000


class SessionClock:
    """Wall-clock milliseconds as read once, when a session starts, then advanced by the
    monotonic clock. The session's deadlines (handshake, idle) run on it, so they do
    not move when the phone's clock is set mid-sync (an officer correcting it): set an
    hour back, the wall clock would keep a dead peer's session open an hour longer.
    """

    def __init__(self) -> None:
        self._wall_ms = now_ms()
        self._mono_ns = time.monotonic_ns()

    def __call__(self) -> int:
        """Milliseconds since the epoch, by the wall clock at the start."""
        return self._wall_ms + (time.monotonic_ns() - self._mono_ns) // 1_000_000


def _trio_deadline(deadline_ms: int | None, clock: SessionClock) -> float:
    if deadline_ms is None:
        return float("inf")
    return trio.current_time() + max(0.0, (deadline_ms - clock()) / 1000)


def _feed(session: Peer, data: bytes, now: int) -> None:
    """Process ``data``; every frame it commits is durable before this returns, so
    the acknowledgements it queued go out only then (one WAL sync per call)."""
    try:
        with session.node.store.group_commit():
            session.receive_data(data, now)
    except StorageError:
        session.data_to_send()  # drop what was queued: its acks may not be durable
        raise


async def run_session(stream: trio.abc.Stream, session: Peer,
                      limiter: trio.CapacityLimiter) -> SessionSummary:
    """Run ``session`` on ``stream`` until it is done or failed; return its summary.

    Three tasks: a reader that keeps reading (and TLS-decrypting) up to
    :data:`READ_AHEAD_CHUNKS` chunks of :data:`RECEIVE_CHUNK` bytes ahead, a processor
    that feeds everything read so far to the session in one worker-thread call, and a
    sender. So the next frames arrive while the worker applies the last ones.

    Never raises for what the peer did: a protocol error, a reset or a timeout ends
    the session with ``summary.error`` set. Closes nothing: the caller owns
    ``stream``. Raises :class:`~meshsync.model.errors.StorageError` if the local store fails.
    """
    pump = _Pump(stream, session, limiter, SessionClock())
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.sender)
            nursery.start_soon(pump.reader)
            await pump.processor()
            pump.reading.cancel()  # the reader may still wait for bytes; the sender drains
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
        exc = group.exceptions[0]
        cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
        reason = describe_ssl_error(cause) if isinstance(cause, ssl.SSLError) else str(exc)
        session.abort(f"connection lost: {reason or type(exc).__name__}", pump.clock())
    return session.summary


class _Pump:
    """The three tasks of :func:`run_session` and what they share."""

    def __init__(self, stream: trio.abc.Stream, session: Peer,
                 limiter: trio.CapacityLimiter, clock: SessionClock) -> None:
        self.stream, self.session, self.limiter = stream, session, limiter
        self.clock = clock
        self.send_q, self.recv_q = trio.open_memory_channel[bytes](64)
        self.in_q, self.out_q = trio.open_memory_channel[bytes](READ_AHEAD_CHUNKS)
        #: What ended the reader or the sender; raised once everything read before it
        #: is fed (the peer may have sent why it left).
        self.lost: list[Exception] = []
        self.reading = trio.CancelScope()

    async def sender(self) -> None:
        async with self.recv_q:
            async for data in self.recv_q:
                if self.lost:
                    continue  # the connection is gone; keep draining the queue
                await self._send(data)

    async def _send(self, data: bytes) -> None:
        """Send ``data`` in pieces of :data:`SEND_PIECE` bytes; a piece that cannot go
        out within the idle timeout means the peer stopped reading: end the session
        (a slow link that keeps reading is never cut)."""
        stall_s = self.session.config.idle_timeout_ms / 1000
        view = memoryview(data)
        for start in range(0, len(view), SEND_PIECE):
            try:
                with trio.move_on_after(stall_s) as stalled:
                    await self.stream.send_all(view[start:start + SEND_PIECE])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.lost.append(exc)
                return
            if stalled.cancelled_caught:
                self.lost.append(trio.BrokenResourceError(
                    f"the peer read nothing for {stall_s:g} s"))
                self.reading.cancel()
                return

    async def flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            await self.send_q.send(data)

    async def reader(self) -> None:
        with self.reading:
            async with self.in_q:
                try:
                    while data := await self.stream.receive_some(RECEIVE_CHUNK):
                        await self.in_q.send(bytes(data))
                    await self.in_q.send(b"")
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.lost.append(exc)

    async def processor(self) -> None:
        session = self.session
        async with self.send_q, self.out_q:
            await self.flush()
            while not session.finished:
                with trio.move_on_at(_trio_deadline(session.get_timer(), self.clock)) as scope:
                    data, eof = await _take_all(self.out_q)
                if scope.cancelled_caught:
                    session.handle_timer(self.clock())
                else:
                    if data:
                        await _process(session, data, self.limiter, self.clock)
                    if eof and self.lost and not session.finished:
                        raise self.lost[0]
                    if eof and not session.finished:
                        await _process(session, b"", self.limiter, self.clock)
                await self.flush()


async def _take_all(chunks: trio.MemoryReceiveChannel[bytes]) -> tuple[bytes, bool]:
    """Wait for one chunk, then take the others already read: ``(data, eof)``, where
    ``eof`` is True once the peer closed the stream (an empty chunk)."""
    try:
        parts = [await chunks.receive()]
    except trio.EndOfChannel:
        return b"", True
    while parts[-1]:
        try:
            parts.append(chunks.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return b"".join(parts), not parts[-1]


async def _process(session: Peer, data: bytes, limiter: trio.CapacityLimiter,
                   clock: SessionClock) -> None:
    try:
        await trio.to_thread.run_sync(_feed, session, data, clock(), limiter=limiter)
    except SessionError as exc:  # in the summary; the endpoint logs it once
        log.debug("session with %s failed: %s", _peer(session), exc)
    except MeshsyncError as exc:  # local fault (store): end this session only
        log.error("session with %s stopped: %s", _peer(session), exc)
        stage = "storage" if isinstance(exc, StorageError) else "local"
        session.abort(str(exc), clock(), stage=stage, tell_peer=True)


def _peer(session: Peer) -> str:
    return short_id(session.peer_key) if session.peer_key else "unknown peer"


__all__ = ["MeshsyncError", "TransportError", "now_ms", "run_session"]
