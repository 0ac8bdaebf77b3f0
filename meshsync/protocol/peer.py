"""The owner of a sync session: a :class:`Peer` holds a node and a
:class:`~meshsync.protocol.session.SyncSession` and pumps events between them.

The session touches no store (docs/architecture.md §3: the node owns its sessions). It
turns bytes into events; a request among them (:data:`~meshsync.protocol.events.Request`)
is answered here, on the node: what it holds over the shared scope, which changes to
send, credentials, receipts and frames of changes to store, the receipt and digest that
end the session. Reports (:data:`~meshsync.protocol.events.Event`) are passed on to
whoever drives the peer (the trio driver, the simulator, tests).

A :class:`Peer` offers the session's sans-I/O interface, so a driver uses it the same
way: ``receive_data`` runs the session and every store write its input causes, in the
caller's thread (the trio driver calls it in a worker thread inside one group commit,
so the ACKs it queues go out only once their frames are durable).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from meshsync.model.change import Change
from meshsync.model.errors import ConcurrentAppendError, RemoteError
from meshsync.protocol.events import (
    ChangesReceived,
    ChangesWanted,
    CredentialsReceived,
    EndWanted,
    Event,
    HoldingsWanted,
    ReceiptsReceived,
    Request,
    SessionSummary,
)
from meshsync.protocol.meta import Holdings, VersionList, overlaps
from meshsync.protocol.session import SessionConfig, SessionError, SyncSession
from meshsync.protocol.states import State
from meshsync.replica import custody
from meshsync.replica.node import Node
from meshsync.replica.receipt import decode_receipt
from meshsync.replica.receive import ApplyReport
from meshsync.store.base import FeedInfo, in_prefix

RACE_RETRIES = 5


class Peer:
    """A node's end of one sync session.

    Args:
        node: the local replica; used by one thread at a time (the caller's).
        config: mesh id, role, share scope, limits and timeouts.
        now_ms: wall-clock milliseconds at creation (the HELLO states it).
        peer_key: the peer's device key as verified by the transport (mutual TLS),
            or None when the transport proved nothing (simulator, tests).
    """

    def __init__(self, node: Node, config: SessionConfig, *, now_ms: int,
                 peer_key: bytes | None = None) -> None:
        self.node = node
        self.session = SyncSession(config, device=node.key.public_key, now_ms=now_ms,
                                   peer_key=peer_key)
        self._events: deque[Event] = deque()

    # -- the session's sans-I/O interface, with the node's work done ---------------

    def receive_data(self, data: bytes, now_ms: int) -> None:
        """Feed bytes from the peer (``b""`` = the peer closed), answering every request
        they cause on the node.

        Raises :class:`SessionError` for anything wrong the peer sent (the session
        then failed, with an ERROR queued for the peer), including what the node
        refuses (a forged signature); :class:`~meshsync.model.errors.UsageError` if
        the session is over; a local fault of the store (such as
        :class:`~meshsync.model.errors.StorageError`) as it is.
        """
        try:
            self.session.receive_data(data, now_ms)
        finally:
            self._serve()

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (and forget them)."""
        return self.session.data_to_send()

    def next_event(self) -> Event | None:
        """The next report (hello, frame applied, done, failed), or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        """Deadline (ms) by which something must arrive, or None."""
        return self.session.get_timer()

    def handle_timer(self, now_ms: int) -> None:
        """Fail the session if its deadline has passed (handshake or idle timeout)."""
        self.session.handle_timer(now_ms)
        self._serve()

    def abort(self, reason: str, now_ms: int, *, stage: str = "transport",
              tell_peer: bool = False) -> None:
        """End the session locally (see :meth:`SyncSession.abort`)."""
        self.session.abort(reason, now_ms, stage=stage, tell_peer=tell_peer)
        self._serve()

    @property
    def finished(self) -> bool:
        """True once the session is DONE or FAILED."""
        return self.session.finished

    @property
    def summary(self) -> SessionSummary:
        """What the session did so far."""
        return self.session.summary

    @property
    def state(self) -> State:
        """The session's state."""
        return self.session.state

    @property
    def config(self) -> SessionConfig:
        """The session's settings."""
        return self.session.config

    @property
    def peer_key(self) -> bytes | None:
        """The peer's device key, once known (TLS or its hello)."""
        return self.session.peer_key

    # -- answering requests ---------------------------------------------------------

    def _serve(self) -> None:
        """Answer requests and keep reports until the session has nothing more."""
        try:
            while (event := self.session.next_event()) is not None:
                if isinstance(event, Request):
                    if not self.session.finished:
                        self._answer(event)
                else:
                    self._events.append(event)
        finally:  # after an error: the reports queued with it (SessionFailed) still count
            while (event := self.session.next_event()) is not None:
                if not isinstance(event, Request):
                    self._events.append(event)

    def _answer(self, request: Request) -> None:
        session = self.session
        try:
            if isinstance(request, ChangesReceived):
                session.acknowledge(self._apply(request))
            elif isinstance(request, ChangesWanted):
                session.send_changes(self._outgoing(request))
            elif isinstance(request, HoldingsWanted):
                session.hold(holdings(self.node, request.scope))
            elif isinstance(request, CredentialsReceived):
                session.stored(*self._add_credentials(request.blobs))
            elif isinstance(request, ReceiptsReceived):
                session.stored(*self._add_receipts(request.blobs))
            else:
                session.conclude(*self._end(request))
        except SessionError:
            raise
        except RemoteError as exc:  # the node refused what the peer sent
            raise session.refuse(exc.detail, stage=exc.stage) from exc

    def _apply(self, request: ChangesReceived) -> ApplyReport:
        """Apply one frame; when another process sharing the store (central) won a
        race, run it again: what the other stored is then a duplicate here."""
        for _ in range(RACE_RETRIES):
            try:
                return self.node.receive(request.changes, source=request.source)
            except ConcurrentAppendError:
                continue
        raise self.session.refuse("the store stayed busy with another process; "
                                  "try again later", stage="storage")

    def _outgoing(self, request: ChangesWanted) -> Iterator[Change]:
        if request.feed is not None:
            return self.node.changes_since(request.since, request.feed.__eq__)
        scope = request.scope
        return self.node.changes_since(request.since, lambda feed: in_prefix(feed[1], scope))

    def _add_credentials(self, blobs: tuple[bytes, ...]) -> tuple[int, list[str]]:
        new, warnings = 0, []
        for blob in blobs:
            try:
                new += bool(self.node.add_credential(blob))
            except RemoteError as exc:
                warnings.append(f"credential refused: {exc.detail}")
        return new, warnings

    def _add_receipts(self, blobs: tuple[bytes, ...]) -> tuple[int, list[str]]:
        new, warnings = 0, []
        with self.node.store.transaction():
            for blob in blobs:
                try:
                    new += bool(custody.add_receipt(self.node, blob))
                except RemoteError as exc:
                    warnings.append(f"receipt refused: {exc.detail}")
        return new, warnings

    def _end(self, request: EndWanted) -> tuple[VersionList, list[bytes], bytes | None]:
        receipt = None
        if request.issue_receipt:
            with self.node.store.transaction():
                receipt = custody.issue_receipt(self.node, request.scope)
        return version_list(self.node, request.scope), self.node.store.credentials(), receipt


def holdings(node: Node, scope: str) -> Holdings:
    """What ``node`` holds over ``scope`` now: feeds, credentials and the receipts whose
    scope overlaps it."""
    infos = _feed_infos(node, scope)
    return Holdings.build([(f.feed, f.head_seq) for f in infos], [f.head_hash for f in infos],
                          node.store.credentials(), _receipts(node, scope))


def version_list(node: Node, scope: str) -> VersionList:
    """``node``'s version vector over ``scope`` now, sorted."""
    return [(f.feed, f.head_seq) for f in _feed_infos(node, scope)]


def _feed_infos(node: Node, scope: str) -> list[FeedInfo]:
    return sorted((f for f in node.store.feeds()
                   if f.head_seq > 0 and in_prefix(f.partition, scope)),
                  key=lambda f: (f.partition, f.author))


def _receipts(node: Node, scope: str) -> list[bytes]:
    out = []
    for blob in node.store.receipts():
        try:
            if overlaps(decode_receipt(blob).scope, scope):
                out.append(blob)
        except RemoteError:
            continue
    return out


__all__ = ["Peer", "holdings", "version_list"]
