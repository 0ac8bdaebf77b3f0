"""The sync session: a sans-I/O state machine (h11 / aioquic shape).

Both ends run the same machine; nobody is "client" once connected. Bytes go in with
:meth:`SyncSession.receive_data`, bytes to send come out of
:meth:`SyncSession.data_to_send`, events from :meth:`SyncSession.next_event`, and
time is an argument: :meth:`get_timer` gives the next deadline and
:meth:`handle_timer` fires it.

Protocol version 2 (every message is a frame, see :mod:`meshsync.protocol.frames`)::

    both:  HELLO {proto, mesh, device, role, scope, clock_ms}
    both:  SUMMARY [feeds, credentials, receipts] digests (16 B each) of what this
           side holds over the shared scope, and the skew it measured from the
           peer's hello -> all three equal: done (identical peers: one round trip)
    both:  VV [authors, entries] | nil, credential digests | nil, receipt
           digests | nil; nil where that SUMMARY digest was equal (the peer then
           holds the same). The VV is the version vector taken for the SUMMARY, in
           its compact form (:mod:`meshsync.protocol.meta`).
    both:  CRED blobs the peer lacks; RCPT receipts the peer lacks; CHANGES frames
           (bounded in bytes, each applied in one transaction and answered by
           [ACK, n] or [ACK, n, [VV index, ...]]) in feed order, at most ``window``
           unacknowledged (items: :mod:`meshsync.protocol.stream`); then SENT_ALL
    both:  RCPT [at_ms, delta, sig] (gateway and central: their receipt for the
           shared scope, compact), then FIN digest of feeds and credentials, once
           the peer's SENT_ALL is in and all our frames are acked
           -> converged iff both final digests are equal

A peer of another version is refused at HELLO (see :mod:`meshsync.protocol.frames`).

Resumption needs no extra state: each frame the receiver ACKs is durable, so the
next session's version vectors start where the last one stopped.

Errors: anything wrong the peer sent raises :class:`SessionError` (the only
exception ``receive_data`` raises for remote input) after queueing an ERROR frame
that tells the peer why; the session is then FAILED.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from meshsync.model.change import Change, FeedId
from meshsync.model.errors import ConcurrentAppendError, MeshsyncError, RemoteError, UsageError
from meshsync.model.identity import PUBLIC_KEY_BYTES, short_id
from meshsync.protocol import frames as fr
from meshsync.protocol.events import (
    ChangesApplied,
    Event,
    PeerHello,
    SessionDone,
    SessionFailed,
    SessionSummary,
)
from meshsync.protocol.meta import (
    DIGEST_BYTES,
    Holdings,
    MetaExchange,
    VersionList,
    compact_receipt,
    expand_receipt,
    final_digest,
    receipt_base,
    shared_scope,
    version_list,
)
from meshsync.protocol.stream import OutgoingChanges, SessionDecoder, changes_frame
from meshsync.replica.node import Node
from meshsync.replica.receive import ApplyReport
from meshsync.store.base import in_prefix

RACE_RETRIES = 5
MAX_WALL_MS = (1 << 48) - 1  # the HLC's wall-clock field (meshsync.model.hlc)


class SessionError(RemoteError):
    """The peer broke the protocol or sent bad data; the session is over."""

    stage = "protocol"


@dataclass(frozen=True)
class SessionConfig:
    """Per-node session settings. Times in milliseconds, sizes in bytes."""

    mesh_id: str = "default"
    role: str = "pantarlih"
    share_scope: str = ""
    handshake_timeout_ms: int = 10_000
    idle_timeout_ms: int = 60_000
    clock_warn_ms: int = 2 * 60_000
    window: int = 16
    frame_target: int = fr.FRAME_TARGET_BYTES
    issue_receipts: bool = False


class State:
    """Session states."""

    HELLO = "await-hello"
    SUMMARY = "await-summary"
    VV = "await-vv"
    STREAM = "streaming"
    FIN = "await-fin"
    DONE = "done"
    FAILED = "failed"


# Every legal (state, received message) pair and its handler; anything else is a
# protocol error (as in h11's ``_state.py``). `make sessiondiagram` can draw this table.
TRANSITIONS: dict[tuple[str, int], str] = {
    (State.HELLO, fr.HELLO): "_on_hello",
    (State.SUMMARY, fr.SUMMARY): "_on_summary",
    (State.VV, fr.VV): "_on_vv",
    (State.STREAM, fr.CRED): "_on_cred",
    (State.STREAM, fr.RCPT): "_on_receipts",
    (State.FIN, fr.RCPT): "_on_receipts",
    (State.STREAM, fr.CHANGES): "_on_changes",
    (State.STREAM, fr.ACK): "_on_ack",
    (State.STREAM, fr.SENT_ALL): "_on_sent_all",
    (State.STREAM, fr.FIN): "_on_fin",
    (State.FIN, fr.FIN): "_on_fin",
}


class SyncSession:
    """One sync session with one peer over one ordered byte stream.

    Args:
        node: the local replica.
        config: mesh id, role, share scope, limits and timeouts.
        now_ms: wall-clock milliseconds at creation (the HELLO states it).
        peer_key: the peer's device key as verified by the transport (mutual TLS),
            or None when the transport proved nothing (simulator, tests).
    """

    def __init__(self, node: Node, config: SessionConfig, *, now_ms: int,
                 peer_key: bytes | None = None) -> None:
        self.node, self.config = node, config
        self.state = State.HELLO
        self.peer_key = peer_key
        self.summary = SessionSummary(started_ms=now_ms)
        self._reader = fr.FrameReader()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._now = now_ms
        self._deadline: int | None = now_ms + config.handshake_timeout_ms
        self._scope: str | None = None
        self._peer_vv: dict[FeedId, int] = {}
        self._held = Holdings([], [], [])  # what our SUMMARY and VV describe
        self._peer_digests: list[bytes] = []
        self._last_short_batch = 0  # last of our frames with a short feed item
        self._peer_creds: set[bytes] = set()
        self._peer_receipts: set[bytes] = set()
        self._meta_frames: set[tuple[int, bool]] = set()
        self._outgoing: OutgoingChanges | None = None
        self._decoder = SessionDecoder(self._held)
        self._batches_sent = self._batches_acked = self._batches_received = 0
        self._sent_all = self._peer_sent_all = self._fin_sent = False
        self._peer_digest: bytes | None = None
        self._sent_digest = b""
        self._send([fr.HELLO, {"proto": fr.PROTOCOL_VERSION, "mesh": config.mesh_id,
                               "device": node.key.public_key, "role": config.role,
                               "scope": config.share_scope, "clock_ms": now_ms}])

    # -- the sans-I/O interface ------------------------------------------------

    def receive_data(self, data: bytes, now_ms: int) -> None:
        """Feed bytes from the peer (``b""`` = the peer closed) and process them.

        Raises :class:`SessionError` if the peer sent anything wrong (an ERROR
        frame for the peer is then queued) and :class:`UsageError` if the session
        is already over.
        """
        if self.state in (State.DONE, State.FAILED):
            if data:
                raise UsageError(f"session is {self.state}; no more data expected")
            return
        self._now = now_ms
        self.summary.bytes_received += len(data)
        self._reader.feed(data)
        try:
            while self.state not in (State.DONE, State.FAILED):
                got = self._reader.next_message()
                if got is None:
                    break
                self._dispatch(*got)
            if self._reader.eof and self.state not in (State.DONE, State.FAILED):
                raise SessionError(f"peer closed the connection while {self.state}")
        except SessionError as exc:
            self._fail(exc.stage, exc.detail, by_peer=False)
            raise
        except RemoteError as exc:
            self._fail(exc.stage, exc.detail, by_peer=False)
            raise SessionError(exc.detail, stage=exc.stage) from exc
        if not self._live():
            self._deadline = None
        elif self.state != State.HELLO:  # the handshake deadline is not extended by trickling
            self._deadline = now_ms + self.config.idle_timeout_ms

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        """The next event, or None."""
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

    @property
    def finished(self) -> bool:
        """True once DONE or FAILED."""
        return not self._live()

    # -- internals ---------------------------------------------------------------

    def _live(self) -> bool:
        return self.state not in (State.DONE, State.FAILED)

    def _send(self, message: list[Any]) -> None:
        self._send_raw(fr.encode_frame(message))

    def _send_raw(self, frame: bytes) -> None:
        self._out += frame
        self.summary.bytes_sent += len(frame)
        self.summary.frames_sent += 1

    def _dispatch(self, message: list[Any], size: int) -> None:
        self.summary.frames_received += 1
        kind = message[0]
        if kind == fr.ERROR:
            self._on_error(message)
            return
        handler = TRANSITIONS.get((self.state, kind))
        if handler is None:
            raise SessionError(f"unexpected {fr.NAMES[kind]} while {self.state}")
        getattr(self, handler)(message)

    def _fail(self, stage: str, reason: str, *, by_peer: bool, tell_peer: bool = True) -> None:
        if tell_peer and not by_peer:
            self._send([fr.ERROR, stage, reason[:500]])
        self.state = State.FAILED
        self.summary.error = f"{stage}: {reason}"
        self.summary.finished_ms = self._now
        self._events.append(SessionFailed(stage, reason, by_peer, self.summary))

    def _on_error(self, message: list[Any]) -> None:
        stage = str(message[1]) if len(message) > 1 else "unknown"
        reason = str(message[2]) if len(message) > 2 else "no reason given"
        self._fail(stage, f"peer refused: {reason}", by_peer=True)

    # hello and summary

    def _on_hello(self, message: list[Any]) -> None:
        hello = message[1] if len(message) == 2 and type(message[1]) is dict else None
        if hello is None:
            raise SessionError("malformed hello")
        if hello.get("proto") != fr.PROTOCOL_VERSION:
            raise SessionError(f"incompatible protocol version {hello.get('proto')!r}; "
                               f"this device speaks {fr.PROTOCOL_VERSION}", stage="version")
        if hello.get("mesh") != self.config.mesh_id:
            raise SessionError(f"peer is in mesh {hello.get('mesh')!r}, "
                               f"this device in {self.config.mesh_id!r}", stage="mesh")
        device, role, scope, clock = (hello.get(k) for k in ("device", "role", "scope",
                                                               "clock_ms"))
        if not isinstance(device, bytes) or len(device) != PUBLIC_KEY_BYTES \
                or type(role) is not str or type(scope) is not str or type(clock) is not int \
                or not 0 <= clock <= MAX_WALL_MS:
            raise SessionError("malformed hello fields")
        if self.peer_key is not None and device != self.peer_key:
            raise SessionError("hello names a different device than the TLS certificate",
                               stage="identity")
        self.peer_key = device
        self.summary.peer, self.summary.peer_role = device, role
        skew = clock - self._now
        self.summary.clock_skew_ms = skew
        if abs(skew) > self.config.clock_warn_ms:
            self.summary.clock_warnings.append(
                f"peer {short_id(device)} clock differs from ours by {skew // 1000} s")
        self._events.append(PeerHello(device, role, scope, skew))
        self._scope = shared_scope(self.config.share_scope, scope)
        self._held = Holdings.of(self.node, self._scope)
        self._send([fr.SUMMARY, self._held.digests, -skew])
        self.state = State.SUMMARY

    def _in_scope(self, feed: FeedId) -> bool:
        return self._scope is not None and in_prefix(feed[1], self._scope)

    def _on_summary(self, message: list[Any]) -> None:
        if len(message) != 3 or type(message[1]) is not list or len(message[1]) != 3 \
                or not all(isinstance(d, bytes) and len(d) == DIGEST_BYTES
                           for d in message[1]) or type(message[2]) is not int:
            raise SessionError("malformed summary")
        self.summary.peer_says_skew_ms = message[2]
        if abs(message[2]) > self.config.clock_warn_ms:
            self.summary.clock_warnings.append(
                f"peer says this device's clock is off by {-message[2] // 1000} s")
        self._peer_digests = message[1]
        if self._scope is None or self._peer_digests == self._held.digests:
            self._finish(converged=self._scope is not None)
            return
        meta = MetaExchange(self.node, self._scope)
        self._send([fr.VV, *meta.vv_parts(self._held, self._peer_digests)])
        self._decoder = SessionDecoder(self._held)
        self.state = State.VV

    # version vectors, credentials, streaming

    def _on_vv(self, message: list[Any]) -> None:
        if len(message) != 4:
            raise SessionError("malformed version vector")
        meta = MetaExchange(self.node, self._scope)
        peer_list, self._peer_creds, self._peer_receipts = meta.read_vv_parts(
            message[1:], self._held, self._peer_digests)
        self._peer_vv = dict(peer_list)
        self.state = State.STREAM
        self._send_credentials()
        receipts = meta.missing(meta.receipts(), self._peer_receipts)
        if receipts:
            self._send([fr.RCPT, receipts])
        refs = {feed: (index, seq) for index, (feed, seq) in enumerate(peer_list)}
        self._outgoing = OutgoingChanges(self.node, self._peer_vv, self._in_scope,
                                         self.config.frame_target, refs)
        self._pump()

    def _send_credentials(self) -> None:
        meta = MetaExchange(self.node, self._scope)
        blobs = meta.missing(meta.credentials(), self._peer_creds)
        if blobs:
            self._send([fr.CRED, blobs])
            self.summary.credentials_sent += len(blobs)

    def _once_per_phase(self, kind: int) -> None:
        """A peer sends CRED and RCPT at most once before its SENT_ALL and once after
        (receipts: the missing ones after VV, its own before FIN); a copy is refused."""
        if (kind, self._peer_sent_all) in self._meta_frames:
            raise SessionError(f"second {fr.NAMES[kind]} frame")
        self._meta_frames.add((kind, self._peer_sent_all))

    def _on_cred(self, message: list[Any]) -> None:
        self._once_per_phase(fr.CRED)
        if len(message) != 2 or type(message[1]) is not list or \
                not all(isinstance(b, bytes) for b in message[1]):
            raise SessionError("malformed credentials")
        self.summary.credentials_received += MetaExchange(self.node, self._scope) \
            .accept_credentials(message[1], self.summary.clock_warnings)

    def _on_receipts(self, message: list[Any]) -> None:
        """Receipts the peer relays (blobs) or issued at the end of this session
        (compact, see :mod:`meshsync.protocol.meta`)."""
        self._once_per_phase(fr.RCPT)
        if len(message) != 2 or type(message[1]) is not list:
            raise SessionError("malformed receipts")
        assert self._scope is not None and self.peer_key is not None
        blobs = [item if isinstance(item, bytes) else
                 expand_receipt(item, self.peer_key, self._scope, self._receipt_base())
                 for item in message[1]]
        self.summary.receipts_received += MetaExchange(self.node, self._scope) \
            .accept_receipts(blobs, self.summary.clock_warnings)

    def _receipt_base(self) -> VersionList:
        return receipt_base(dict(self._held.vv), self._peer_vv)

    def _pump(self) -> None:
        """Send change frames while the window allows; then SENT_ALL, once no frame
        with a short feed item awaits its ack (which may ask for a feed again)."""
        while not self._sent_all and self._batches_sent - self._batches_acked < \
                self.config.window:
            assert self._outgoing is not None
            items, count, short = self._outgoing.next_batch()
            if not items:
                if self._batches_acked >= self._last_short_batch:
                    self._send([fr.SENT_ALL, self._batches_sent])
                    self._sent_all = True
                break
            self._batches_sent += 1
            if short:
                self._last_short_batch = self._batches_sent
            self._send_raw(changes_frame(self._batches_sent, items))
            self.summary.changes_sent += count
        self._maybe_fin()

    def _on_changes(self, message: list[Any]) -> None:
        if len(message) != 3 or type(message[2]) is not list or \
                message[1] != self._batches_received + 1:
            raise SessionError("malformed or out-of-order changes frame")
        self._batches_received += 1
        changes = []
        for item in message[2]:
            change = self._decoder.decode(item)
            if change is None:
                continue
            if not self._in_scope(change.feed):
                raise SessionError(f"peer sent feed {change.partition} outside the shared "
                                   "scope", stage="policy")
            changes.append(change)
        report = self._receive(changes)
        self.summary.apply.merge(report)
        self.summary.changes_received += report.applied
        self.summary.duplicates += report.duplicates
        self.summary.clock_warnings += report.clock_warnings
        resend = self._decoder.take_resend()
        self._send([fr.ACK, self._batches_received, *([resend] if resend else [])])
        self._events.append(ChangesApplied(report))

    def _receive(self, changes: list[Change]) -> ApplyReport:
        """Apply one frame; when another process sharing the store (central) won a
        race, run it again: what the other stored is then a duplicate here."""
        source = f"peer:{short_id(self.peer_key or b'')}"
        for _ in range(RACE_RETRIES):
            try:
                return self.node.receive(changes, source=source)
            except ConcurrentAppendError:
                continue
        raise SessionError("the store stayed busy with another process; try again later",
                           stage="storage")

    def _on_ack(self, message: list[Any]) -> None:
        if len(message) not in (2, 3) or message[1] != self._batches_acked + 1 or \
                message[1] > self._batches_sent:
            raise SessionError("unexpected ack")
        if len(message) == 3:  # feeds to send again with full feed items (a fork)
            if type(message[2]) is not list or not message[2] or self._sent_all:
                raise SessionError("malformed ack or feeds asked for after sent-all")
            assert self._outgoing is not None
            for index in message[2]:
                self._outgoing.resend(index)
        self._batches_acked += 1
        self._pump()

    def _on_sent_all(self, message: list[Any]) -> None:
        if len(message) != 2 or message[1] != self._batches_received:
            raise SessionError("sent-all count does not match the frames received")
        if self._peer_sent_all:
            raise SessionError("second sent-all")
        self._peer_sent_all = True
        self._maybe_fin()

    def _maybe_fin(self) -> None:
        if self._fin_sent or not (self._sent_all and self._peer_sent_all
                                  and self._batches_acked == self._batches_sent):
            return
        if self.config.issue_receipts:
            # The peer's changes are all committed here: say so, before finishing.
            receipt = MetaExchange(self.node, self._scope).issue()
            if receipt is not None:
                self._send([fr.RCPT, [compact_receipt(receipt, self._receipt_base())]])
        self._sent_digest = final_digest(self.node, self._scope)
        self._send([fr.FIN, self._sent_digest])
        self._fin_sent = True
        self.state = State.FIN
        if self._peer_digest is not None:
            self._finish(converged=self._peer_digest == self._sent_digest)

    def _on_fin(self, message: list[Any]) -> None:
        if len(message) != 2 or not isinstance(message[1], bytes):
            raise SessionError("malformed fin")
        self._peer_digest = message[1]
        if self._fin_sent:
            self._finish(converged=self._peer_digest == self._sent_digest)
        else:
            self._maybe_fin()
            if not self._fin_sent:
                raise SessionError("peer finished before this side's changes were acked")

    def _finish(self, *, converged: bool) -> None:
        self.summary.scope = self._scope
        if converged:
            self.summary.peer_vv = dict(version_list(self.node, self._scope))
        else:
            self.summary.peer_vv = dict(self._peer_vv)
        self.state = State.DONE
        self._deadline = None
        self.summary.converged = converged
        self.summary.finished_ms = self._now
        self._events.append(SessionDone(self.summary))


__all__ = ["MeshsyncError", "SessionConfig", "SessionError", "State", "SyncSession"]
