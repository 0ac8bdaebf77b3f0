"""The sync session: a sans-I/O state machine (h11 / aioquic shape) that touches no store.

Both ends run the same machine; nobody is "client" once connected. Bytes go in with
:meth:`SyncSession.receive_data`, bytes to send come out of
:meth:`SyncSession.data_to_send`, events from :meth:`SyncSession.next_event`, and
time is an argument: :meth:`get_timer` gives the next deadline and
:meth:`handle_timer` fires it. The session holds no node: what it needs from one it
asks its owner for with a request event (:mod:`meshsync.protocol.events`), and it reads
no further input until the owner answers (:meth:`hold`, :meth:`send_changes`,
:meth:`stored`, :meth:`acknowledge`, :meth:`conclude`). The owner that holds a node is
:class:`meshsync.protocol.peer.Peer` (docs/architecture.md §3).

Protocol version 4 (every message is a frame, see :mod:`meshsync.protocol.frames`; the
messages are typed in :mod:`meshsync.protocol.messages`, the states and transitions are
in :mod:`meshsync.protocol.states`, drawn in docs/protocol.md)::

    both:  HELLO {proto, mesh, device, role, scope, clock_ms, zlib}; every frame
           after it may be compressed with the best dictionary both listed in zlib
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
           -> converged iff both final digests are equal: each side then holds all
           that either side offered in its VV (what others wrote meanwhile left
           out: :func:`~meshsync.protocol.meta.fin_digest`, docs/protocol.md)

A peer of another version is refused at HELLO (see :mod:`meshsync.protocol.frames`).

Resumption needs no extra state: each frame the receiver ACKs is durable, so the
next session's version vectors start where the last one stopped.

Errors: anything wrong the peer sent raises :class:`SessionError` (the only
exception ``receive_data`` and the answer methods raise for remote input) after
queueing an ERROR frame that tells the peer why; the session is then FAILED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from meshsync.model.change import Change, FeedId
from meshsync.model.errors import MeshsyncError
from meshsync.model.identity import short_id
from meshsync.protocol import frames as fr
from meshsync.protocol import messages as msg
from meshsync.protocol.config import SessionConfig
from meshsync.protocol.events import (
    ChangesApplied,
    ChangesReceived,
    ChangesWanted,
    CredentialsReceived,
    EndWanted,
    HoldingsWanted,
    PeerHello,
    ReceiptsReceived,
    SessionDone,
)
from meshsync.protocol.machine import SessionMachine
from meshsync.protocol.messages import SessionError
from meshsync.protocol.meta import (
    Holdings,
    VersionList,
    compact_receipt,
    expand_receipt,
    expected_checks,
    fin_digest,
    forked_feeds,
    missing,
    offered_vv,
    read_vv_parts,
    receipt_base,
    shared_scope,
    vv_parts,
)
from meshsync.protocol.progress import offer_counts
from meshsync.protocol.states import AFTER_PEER_SENT_ALL, State, Step
from meshsync.protocol.stream import OutgoingChanges
from meshsync.protocol.window import ReceiveWindow, SendWindow
from meshsync.replica.receive import ApplyReport
from meshsync.trust.scope import scope_contains


class SyncSession(SessionMachine):
    """One sync session with one peer over one ordered byte stream: what each message
    means (the machinery, bytes to events, is :class:`~meshsync.protocol.machine.SessionMachine`).

    Args:
        config: mesh id, role, share scope, limits and timeouts.
        device: this node's device key (32 bytes), stated in the HELLO.
        now_ms: wall-clock milliseconds at creation (the HELLO states it).
        peer_key: the peer's device key as verified by the transport (mutual TLS),
            or None when the transport proved nothing (simulator, tests).
    """

    def __init__(self, config: SessionConfig, *, device: bytes, now_ms: int,
                 peer_key: bytes | None = None) -> None:
        super().__init__(config, now_ms=now_ms, peer_key=peer_key)
        self._scope: str | None = None
        self._peer_share = ""
        self._skew = 0
        self._peer_vv: dict[FeedId, int] = {}
        self._peer_creds: set[bytes] = set()  # short digests of its credentials (VV)
        self._held = Holdings.empty()  # what our SUMMARY and VV describe
        self._peer_digests: tuple[bytes, ...] = ()
        self._refs: dict[FeedId, tuple[int, int]] = {}
        self._meta_frames: set[tuple[int, bool]] = set()
        self._window = SendWindow(config.window)
        self._inbound = ReceiveWindow(self._held)
        self._final_vv: VersionList = []
        self._sent_digest = b""
        self._send(msg.Hello(fr.PROTOCOL_VERSION, config.mesh_id, device, config.role,
                             config.share_scope, now_ms, self.offered_dictionaries))

    @property
    def holdings(self) -> Holdings:
        """What this side's SUMMARY and VV described (empty before the owner said)."""
        return self._held

    # -- answers to requests ----------------------------------------------------

    def hold(self, holdings: Holdings) -> None:
        """Answer :class:`~meshsync.protocol.events.HoldingsWanted`: what the node holds
        over the shared scope now. Raises :class:`SessionError` as receive_data."""
        if self._answered(HoldingsWanted):
            self._hold(holdings)
            self._run()

    def send_changes(self, changes: Iterator[Change]) -> None:
        """Answer :class:`~meshsync.protocol.events.ChangesWanted`: the changes to send,
        read lazily as the window opens. Raises :class:`SessionError` as receive_data."""
        request = self._answered(ChangesWanted)
        if request is None:
            return
        if request.feed is None:
            self._window.start(OutgoingChanges(changes, self.config.frame_target, self._refs))
        else:
            self._window.send_again(request.feed, changes)
        self._guarded(self._next_resend_or_pump)
        self._run()

    def stored(self, new: int, warnings: list[str]) -> None:
        """Answer :class:`~meshsync.protocol.events.CredentialsReceived` or
        :class:`~meshsync.protocol.events.ReceiptsReceived`: ``new`` blobs were kept,
        ``warnings`` says why others were refused. Raises :class:`SessionError` as
        receive_data."""
        request = self._answered(CredentialsReceived | ReceiptsReceived)
        if isinstance(request, CredentialsReceived):
            self.summary.credentials_received += new
        elif request is not None:
            self.summary.receipts_received += new
        self.summary.clock_warnings += warnings
        self._run()

    def acknowledge(self, report: ApplyReport) -> None:
        """Answer :class:`~meshsync.protocol.events.ChangesReceived`: the frame is
        committed (durable once the owner's group commit ends, before the ACK queued
        here is sent). Raises :class:`SessionError` as receive_data."""
        request = self._answered(ChangesReceived)
        if request is None:
            return
        self.summary.apply.merge(report)
        self.summary.changes_received += report.applied
        self.summary.duplicates += report.duplicates
        self.summary.clock_warnings += report.clock_warnings
        self._send(self._inbound.ack(request.batch))
        self._events.append(ChangesApplied(report))
        self._run()

    def conclude(self, vv: VersionList, credentials: list[bytes],
                 receipt: bytes | None) -> None:
        """Answer :class:`~meshsync.protocol.events.EndWanted`: the node's version vector
        over the shared scope (sorted by :func:`~meshsync.protocol.meta.feed_order`),
        its credentials now and the receipt it issued (or None). Sends RCPT and FIN."""
        if self._answered(EndWanted) is None:
            return
        if receipt is not None:
            # The peer's changes are all committed here: say so, before finishing.
            self._send(msg.Receipts((compact_receipt(receipt, self._receipt_base()),)))
        self._final_vv = offered_vv(self._held, self._peer_vv, vv)  # the peer holds it
        self._sent_digest = fin_digest(self._held, self._peer_vv, self._peer_creds,
                                       vv, credentials)
        self._send(msg.Fin(self._sent_digest))
        self._step(Step.FIN)
        self._run()

    # -- internals ---------------------------------------------------------------

    def _handle(self, message: msg.Message) -> None:
        _HANDLERS[type(message)](self, message)

    def _on_error(self, message: msg.Error) -> None:
        self.summary.refusal_credentials = list(message.credentials)
        self._fail(message.stage, f"peer refused: {message.reason}", by_peer=True)

    # hello and summary

    def _on_hello(self, hello: msg.Hello) -> None:
        if hello.mesh != self.config.mesh_id:
            raise SessionError(f"peer is in mesh {hello.mesh!r}, "
                               f"this device in {self.config.mesh_id!r}", stage="mesh")
        if self.peer_key is not None and hello.device != self.peer_key:
            raise SessionError("hello names a different device than the TLS certificate",
                               stage="identity")
        self.peer_key = hello.device
        self._agree_compression(hello.zlib)
        self.summary.peer, self.summary.peer_role = hello.device, hello.role
        self._skew = skew = hello.clock_ms - self._now
        self.summary.clock_skew_ms = skew
        if abs(skew) > self.config.clock_warn_ms:
            self.summary.clock_warnings.append(
                f"peer {short_id(hello.device)} clock differs from ours by {skew // 1000} s")
        self._events.append(PeerHello(hello.device, hello.role, hello.scope, skew))
        self._scope = shared_scope(self.config.share_scope, hello.scope)
        self._peer_share = hello.scope
        if self._scope is None:
            self._hold(Holdings.empty())
        else:
            self._ask(HoldingsWanted(self._scope))

    def _hold(self, holdings: Holdings) -> None:
        self._held = holdings
        self._inbound = ReceiveWindow(holdings)
        self._send(msg.Summary((holdings.digests[0], holdings.digests[1],
                                holdings.digests[2]), -self._skew))

    def _on_summary(self, message: msg.Summary) -> None:
        self.summary.peer_says_skew_ms = message.skew_ms
        if abs(message.skew_ms) > self.config.clock_warn_ms:
            self.summary.clock_warnings.append(
                f"peer says this device's clock is off by {-message.skew_ms // 1000} s")
        self._peer_digests = message.digests
        if self._scope is None or list(message.digests) == self._held.digests:
            self._step(Step.SAME)
            self._finish(converged=self._scope is not None, vv=self._held.vv)
            return
        self._send(msg.VersionVectors(*vv_parts(self._held, message.digests)))

    # version vectors, credentials, streaming

    def _on_vv(self, message: msg.VersionVectors) -> None:
        assert self._scope is not None
        peer_list, peer_checks, peer_creds, peer_receipts = read_vv_parts(
            message.parts, self._held, self._peer_digests, self._scope)
        self._peer_vv = dict(peer_list)
        self._peer_creds = peer_creds
        self.summary.changes_offered, self.summary.changes_to_send = offer_counts(
            dict(self._held.vv), self._peer_vv, self._in_scope)
        forks = forked_feeds(self._held, peer_list, peer_checks)
        self.summary.forked_heads = len(forks)
        blobs = missing(self._held.credentials, peer_creds)
        if blobs:
            self._send(msg.Credentials(tuple(blobs)))
            self.summary.credentials_sent += len(blobs)
        receipts = missing(self._held.receipts, peer_receipts)
        if receipts:
            self._send(msg.Receipts(tuple(receipts)))
        self._refs = {feed: (index, seq) for index, (feed, seq) in enumerate(peer_list)}
        since = dict(self._peer_vv)
        for feed in forks:  # the peer holds another change at our head: send ours
            since[feed] -= 1
        self._ask(ChangesWanted(since, self._scope))

    def _once_per_phase(self, kind: int) -> None:
        """A peer sends CRED and RCPT at most once before its SENT_ALL and once after
        (receipts: the missing ones after VV, its own before FIN); a copy is refused."""
        phase = (kind, self.state in AFTER_PEER_SENT_ALL)
        if phase in self._meta_frames:
            raise SessionError(f"second {fr.NAMES[kind]} frame")
        self._meta_frames.add(phase)

    def _on_cred(self, message: msg.Credentials) -> None:
        self._once_per_phase(fr.CRED)
        self._ask(CredentialsReceived(message.blobs))

    def _on_receipts(self, message: msg.Receipts) -> None:
        """Receipts the peer relays (blobs) or issued at the end of this session
        (compact, see :mod:`meshsync.protocol.meta`)."""
        self._once_per_phase(fr.RCPT)
        assert self._scope is not None and self.peer_key is not None
        base = self._receipt_base()
        expected = expected_checks(base, self._held, self._inbound.heads)
        blobs = tuple(item if isinstance(item, bytes) else
                      expand_receipt(item, self.peer_key, self._scope, base, expected)
                      for item in message.items)
        self._ask(ReceiptsReceived(blobs))

    def _receipt_base(self) -> VersionList:
        return receipt_base(dict(self._held.vv), self._peer_vv)

    def _next_resend_or_pump(self) -> None:
        """Ask for the next feed the peer wants again, or send while the window allows."""
        if self._window.wanted_again:
            feed = self._window.wanted_again.popleft()
            assert self._scope is not None
            self._ask(ChangesWanted({feed: self._peer_vv[feed]}, self._scope, feed))
        else:
            self._pump()

    def _pump(self) -> None:
        """Send change frames while the window allows; then SENT_ALL, once no frame
        with a short feed item awaits its ack (which may ask for a feed again)."""
        if self.state in (State.STREAM, State.PEER_SENT_ALL):
            for frame, count in self._window.frames():
                self._send_raw(frame)
                self.summary.changes_sent += count
            if self._window.done:
                self._send(msg.SentAll(self._window.sent))
                self._step(Step.SENT_ALL)
        self._maybe_end()

    def _on_changes(self, message: msg.Changes) -> None:
        changes = self._inbound.read(message, self._in_scope)
        self._ask(ChangesReceived(message.batch, changes,
                                  f"peer:{short_id(self.peer_key or b'')}"))

    def _in_scope(self, feed: FeedId) -> bool:
        return self._scope is not None and scope_contains(self._scope, feed[1])

    def _on_ack(self, message: msg.Ack) -> None:
        # An ACK may ask for feeds again with full feed items (a fork).
        self._window.ack(message, sent_all=self.state in (State.SENT_ALL, State.CLOSING))
        self._next_resend_or_pump()

    def _on_sent_all(self, message: msg.SentAll) -> None:
        if message.count != self._inbound.received:
            raise SessionError("sent-all count does not match the frames received")
        self._maybe_end()

    def _maybe_end(self) -> None:
        """Once both sides sent all and our frames are all acked, ask the owner for
        what ends the session (its receipt, what it holds now)."""
        if self.state == State.CLOSING and self._window.all_acked and self._request is None:
            assert self._scope is not None
            self._ask(EndWanted(self._scope, self.config.issue_receipts))

    def _on_fin(self, message: msg.Fin) -> None:
        # A fork at a head seq (found by the VV checks) leaves both digests equal,
        # since a feed's seqs are: the two sides still hold different changes.
        same = message.digest == self._sent_digest and not self.summary.forked_heads
        self._finish(converged=same, vv=self._final_vv)

    def _finish(self, *, converged: bool, vv: VersionList) -> None:
        self.summary.scope = self._scope
        if self._scope is None and self.summary.error is None:
            self.summary.error = (f"scope: this device shares {self.config.share_scope!r} "
                                  f"and the peer shares {self._peer_share!r}: neither "
                                  "contains the other, so there is nothing to sync")
        self.summary.peer_vv = dict(vv) if converged else dict(self._peer_vv)
        self._deadline = None
        self.summary.converged = converged
        self.summary.finished_ms = self._now
        self._events.append(SessionDone(self.summary))


_HANDLERS: dict[type[msg.Message], Callable[[SyncSession, Any], None]] = {
    msg.Hello: SyncSession._on_hello,
    msg.Summary: SyncSession._on_summary,
    msg.VersionVectors: SyncSession._on_vv,
    msg.Credentials: SyncSession._on_cred,
    msg.Receipts: SyncSession._on_receipts,
    msg.Changes: SyncSession._on_changes,
    msg.Ack: SyncSession._on_ack,
    msg.SentAll: SyncSession._on_sent_all,
    msg.Fin: SyncSession._on_fin,
    msg.Error: SyncSession._on_error,
}

__all__ = ["MeshsyncError", "SessionConfig", "SessionError", "State", "SyncSession"]
