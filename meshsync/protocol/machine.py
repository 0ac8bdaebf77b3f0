"""The sync session's machinery: bytes in and out, events and requests, deadlines,
state moves and failure (sans-I/O, h11 / aioquic shape; no store, no node, no clock).

:class:`SessionMachine` is the part of :class:`meshsync.protocol.session.SyncSession`
that does not depend on what the messages mean: it reads frames
(:mod:`meshsync.protocol.frames`), decodes them into typed messages
(:mod:`meshsync.protocol.messages`), moves the state by the transition table
(:mod:`meshsync.protocol.states`) and hands each message to :meth:`_handle`, which the
session defines; it queues frames to send, events for the owner and at most one
request awaiting the owner's answer, and fails the session (telling the peer why) on
anything wrong the peer sent. docs/protocol.md describes the protocol.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Callable
from typing import Any

from meshsync.model.errors import RemoteError, UsageError
from meshsync.model.text import Msg
from meshsync.protocol import frames as fr
from meshsync.protocol import messages as msg
from meshsync.protocol.config import SessionConfig
from meshsync.protocol.events import Event, Request, SessionFailed, SessionSummary
from meshsync.protocol.messages import SessionError
from meshsync.protocol.states import State, Step, Trigger, next_state
from meshsync.protocol.zdict import KNOWN_IDS, best_common


class SessionMachine(abc.ABC):
    """Frames in and out, events, the deadline, the state and failure of one session.

    Args:
        config: mesh id, role, share scope, limits and timeouts.
        now_ms: wall-clock milliseconds at creation (the handshake deadline runs from it).
        peer_key: the peer's device key as verified by the transport (mutual TLS),
            or None when the transport proved nothing (simulator, tests).
    """

    def __init__(self, config: SessionConfig, *, now_ms: int,
                 peer_key: bytes | None = None) -> None:
        self.config = config
        self.state = State.HELLO
        self.peer_key = peer_key
        self.summary = SessionSummary(started_ms=now_ms)
        self._reader = fr.FrameReader()
        self._out = bytearray()
        self._events: deque[Event | Request] = deque()
        self._request: Request | None = None
        self._now = now_ms
        self._deadline: int | None = now_ms + config.handshake_timeout_ms
        self.compression: fr.Compression | None = None
        """The preset dictionary both HELLOs offered (frames after the HELLO are
        compressed with it when that saves bytes); None until then, or if none."""

    def receive_data(self, data: bytes, now_ms: int) -> None:
        """Feed bytes from the peer (``b""`` = the peer closed) and process them, up to
        the first request event the owner must answer.

        Raises :class:`SessionError` if the peer sent anything wrong (an ERROR
        frame for the peer is then queued) and :class:`UsageError` if the session
        is already over.
        """
        if not self._live():
            if data:
                raise UsageError(f"session is {self.state}; no more data expected")
            return
        self._now = now_ms
        self.summary.bytes_received += len(data)
        self._reader.feed(data)
        self._run()
        if not self._live():
            self._deadline = None
        elif self.state != State.HELLO:  # the handshake deadline is not extended by trickling
            self._deadline = now_ms + self.config.idle_timeout_ms

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | Request | None:
        """The next event, or None. A request (:data:`~meshsync.protocol.events.Request`)
        is answered by its owner before the session reads more input."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        """Deadline (ms) by which something must arrive, or None."""
        return self._deadline if self._live() else None

    def handle_timer(self, now_ms: int) -> None:
        """Fail the session if its deadline has passed (handshake or idle timeout)."""
        if self._live() and self._deadline is not None and now_ms >= self._deadline:
            self._now = now_ms
            what = "handshake" if self.state == State.HELLO else "idle"
            self._fail("timeout", f"{what} timeout while {self.state}", by_peer=False)

    def abort(self, reason: str, now_ms: int, *, stage: str = "transport",
              tell_peer: bool = False) -> None:
        """End the session locally: the connection was lost or this side is shutting
        down (``tell_peer`` False), or a local fault such as a full disk ends it
        (``tell_peer`` True queues an ERROR frame with ``stage`` and ``reason``, so the
        peer says why too). A local fault also fails a session that has just finished:
        its last commits may not be durable."""
        if self._live():
            self._now = now_ms
            self._fail(stage, reason, by_peer=False, tell_peer=tell_peer)
        elif tell_peer and self.state == State.DONE:
            # A local fault right after the last message (the final commits could not
            # be made durable): what this side told the peer may not hold; fail it.
            self._now = now_ms
            self.summary.converged = False
            self._fail(stage, reason, by_peer=False, tell_peer=False)

    def refuse(self, reason: str, *, stage: str) -> SessionError:
        """The owner's node refused what the peer sent (a forged signature; a store
        that stayed busy): fail the session, telling the peer, and return the
        :class:`SessionError` for the owner to raise."""
        if self._live():
            self._fail(stage, reason, by_peer=False)
        return SessionError(reason, stage=stage)

    @property
    def finished(self) -> bool:
        """True once DONE or FAILED."""
        return not self._live()


    # -- machinery -----------------------------------------------------------------

    def _live(self) -> bool:
        return self.state not in (State.DONE, State.FAILED)

    def _answered(self, kind: Any) -> Any:
        """The pending request if it is a ``kind`` (now cleared); None if the session
        ended meanwhile; :class:`UsageError` if it asked for something else."""
        if not self._live():
            return None
        request = self._request
        if not isinstance(request, kind):
            raise UsageError(f"the session is not waiting for this answer ({request!r})")
        self._request = None
        return request

    def _ask(self, request: Request) -> None:
        self._request = request
        self._events.append(request)

    def _send(self, message: msg.Message) -> None:
        self._send_raw(msg.encode(message))

    def _agree_compression(self, offered: tuple[int, ...]) -> None:
        """Take the best dictionary both sides offered (the peer's HELLO: ``offered``)
        for the frames both ways from now on."""
        dict_id = best_common(self.offered_dictionaries, offered)
        self.compression = None if dict_id is None else fr.Compression.of(dict_id)
        self._reader.compression = self.compression

    @property
    def offered_dictionaries(self) -> tuple[int, ...]:
        """The dictionary ids this side's HELLO offers (none if ``config.compress`` is off)."""
        return KNOWN_IDS if self.config.compress else ()

    def _send_raw(self, frame: bytes) -> None:
        frame = fr.compress_frame(frame, self.compression)
        self._out += frame
        self.summary.bytes_sent += len(frame)
        self.summary.frames_sent += 1

    def _run(self) -> None:
        """Process buffered frames until a request waits for the owner or they run out."""
        self._guarded(self._process)

    def _guarded(self, work: Callable[[], None]) -> None:
        """Run ``work``; a remote error fails the session (telling the peer) and is
        raised as :class:`SessionError`."""
        try:
            work()
        except SessionError as exc:
            if self._live():
                self._fail(exc.stage, exc.detail, by_peer=False)
            raise
        except RemoteError as exc:
            self._fail(exc.stage, exc.detail, by_peer=False)
            raise SessionError(exc.detail, stage=exc.stage) from exc

    def _process(self) -> None:
        while self._live():
            if self._request is not None:
                return
            got = self._reader.next_message()
            if got is None:
                break
            self._dispatch(got[0])
        if self._reader.eof and self._live():
            raise SessionError(f"peer closed the connection while {self.state}")

    def _dispatch(self, raw: list[Any]) -> None:
        self.summary.frames_received += 1
        message = msg.decode(raw)
        self._move(type(message), f"unexpected {fr.NAMES[message.kind]} while {self.state}")
        self._handle(message)

    @abc.abstractmethod
    def _handle(self, message: msg.Message) -> None:
        """React to ``message``, which the state table allowed (the state has moved)."""

    def _move(self, trigger: Trigger, error: str) -> None:
        state = next_state(self.state, trigger)
        if state is None:
            raise SessionError(error)
        self.state = state

    def _step(self, step: Step) -> None:
        self._move(step, f"this side cannot {step} while {self.state}")

    def _fail(self, stage: str, reason: str, *, by_peer: bool, tell_peer: bool = True) -> None:
        if tell_peer and not by_peer:
            self._send(msg.Error(stage, reason[:500]))
        self.state = State.FAILED
        self._request = None
        self.summary.error = Msg("%(stage)s: %(reason)s", stage=stage, reason=reason) \
            if isinstance(reason, Msg) else f"{stage}: {reason}"
        self.summary.finished_ms = self._now
        self._events.append(SessionFailed(stage, reason, by_peer, self.summary))
