"""Drive a :class:`~meshsync.session.SyncSession` over a trio stream.

The adapter is thin (style.md §5): a receiver task feeds bytes to the session and a
sender task drains what the session wants to send, so neither side can deadlock
with both ends blocked in ``send_all``. Work on the node (signature checks, SQLite
commits) runs in a worker thread under a per-node limiter, so one slow peer never
blocks the others' trio tasks and the node is used by one thread at a time.
"""

from __future__ import annotations

import logging
import ssl
import time

import trio

from meshsync.errors import MeshsyncError, StorageError
from meshsync.identity import short_id
from meshsync.net.errors import TransportError
from meshsync.net.tls import describe_ssl_error
from meshsync.session import SessionError, SyncSession
from meshsync.session_events import SessionSummary

log = logging.getLogger("meshsync.net")

RECEIVE_CHUNK = 64 * 1024
#: Chunks the reader may read ahead of the session (at most ~2 MiB buffered).
READ_AHEAD_CHUNKS = 32


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the I/O edge may read the clock)."""
    return time.time_ns() // 1_000_000


def _trio_deadline(deadline_ms: int | None) -> float:
    if deadline_ms is None:
        return float("inf")
    return trio.current_time() + max(0.0, (deadline_ms - now_ms()) / 1000)


def _feed(session: SyncSession, data: bytes, now: int) -> None:
    """Process ``data``; every frame it commits is durable before this returns, so
    the acknowledgements it queued go out only then (one WAL sync per call)."""
    with session.node.store.group_commit():
        session.receive_data(data, now)


async def run_session(stream: trio.abc.Stream, session: SyncSession,
                      limiter: trio.CapacityLimiter) -> SessionSummary:
    """Run ``session`` on ``stream`` until it is done or failed; return its summary.

    Three tasks: a reader that keeps reading (and TLS-decrypting) up to
    :data:`READ_AHEAD_CHUNKS` chunks of :data:`RECEIVE_CHUNK` bytes ahead, a processor
    that feeds everything read so far to the session in one worker-thread call, and a
    sender. So the next frames arrive while the worker applies the last ones.

    Never raises for what the peer did: a protocol error, a reset or a timeout ends
    the session with ``summary.error`` set. Closes nothing: the caller owns
    ``stream``. Raises :class:`~meshsync.errors.StorageError` if the local store fails.
    """
    send_q, recv_q = trio.open_memory_channel[bytes](64)
    in_q, out_q = trio.open_memory_channel[bytes](READ_AHEAD_CHUNKS)

    async def sender() -> None:
        async with recv_q:
            async for data in recv_q:
                await stream.send_all(data)

    async def flush() -> None:
        data = session.data_to_send()
        if data:
            await send_q.send(data)

    lost: list[Exception] = []  # what ended the reader, raised once all before it is fed
    reading = trio.CancelScope()

    async def reader() -> None:
        with reading:
            async with in_q:
                try:
                    while data := await stream.receive_some(RECEIVE_CHUNK):
                        await in_q.send(bytes(data))
                    await in_q.send(b"")
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    lost.append(exc)

    async def processor() -> None:
        async with send_q, out_q:
            await flush()
            while not session.finished:
                with trio.move_on_at(_trio_deadline(session.get_timer())) as scope:
                    data, eof = await _take_all(out_q)
                if scope.cancelled_caught:
                    session.handle_timer(now_ms())
                else:
                    if data:
                        await _process(session, data, limiter)
                    if eof and lost and not session.finished:
                        raise lost[0]
                    if eof and not session.finished:
                        await _process(session, b"", limiter)
                await flush()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(reader)
            await processor()
            reading.cancel()  # the reader may still wait for bytes; the sender drains
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
        exc = group.exceptions[0]
        cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
        reason = describe_ssl_error(cause) if isinstance(cause, ssl.SSLError) else str(exc)
        session.abort(f"connection lost: {reason or type(exc).__name__}", now_ms())
    return session.summary


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


async def _process(session: SyncSession, data: bytes, limiter: trio.CapacityLimiter) -> None:
    try:
        await trio.to_thread.run_sync(_feed, session, data, now_ms(), limiter=limiter)
    except SessionError as exc:
        log.warning("session with %s failed: %s", _peer(session), exc)
    except MeshsyncError as exc:  # local fault (store): end this session only
        log.error("session with %s stopped: %s", _peer(session), exc)
        stage = "storage" if isinstance(exc, StorageError) else "local"
        session.abort(str(exc), now_ms(), stage=stage, tell_peer=True)


def _peer(session: SyncSession) -> str:
    return short_id(session.peer_key) if session.peer_key else "unknown peer"


__all__ = ["MeshsyncError", "TransportError", "now_ms", "run_session"]
