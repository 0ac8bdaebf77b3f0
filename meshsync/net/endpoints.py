"""Listen for and dial sync peers over TCP + mutual TLS 1.3.

``serve_sync`` never returns (trio naming: ``serve_*``); every connection is handled
in its own task, and whatever one peer does (bad TLS, protocol errors, resets) is
logged with the peer's address and never stops the listener. Unauthenticated
connections are capped and shed, and their refusals logged at a bounded rate
(:mod:`meshsync.net.admission`); a connection gets TLS state only once it sends a byte.
``sync_with`` dials one peer, runs one session and returns its summary.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from meshsync.model.errors import AuthorizationError, MeshsyncError
from meshsync.model.identity import sha256, short_id
from meshsync.net.admission import Admission, ConnectionLimits, RefusalLog, Ticket
from meshsync.net.driver import now_ms, run_session
from meshsync.net.errors import TransportError
from meshsync.net.registry import INCOMING, OUTGOING, SessionRegistry
from meshsync.net.tls import check_peer, describe_ssl_error, peer_chain_der
from meshsync.protocol import frames as fr
from meshsync.protocol.bundle import learn_revocations
from meshsync.protocol.events import SessionSummary
from meshsync.protocol.messages import MAX_ERROR_CREDENTIALS, Error
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig
from meshsync.replica.node import Node
from meshsync.trust.profile import parse_blob
from meshsync.trust.revocation import decode_revocation, is_revocation

log = logging.getLogger("meshsync.net")

HANDSHAKE_TIMEOUT_S = 10.0


@dataclass
class Endpoint:
    """What a node needs to sync over the network.

    ``limiter`` serialises use of ``node`` across connections (one thread at a time).
    """

    node: Node
    config: SessionConfig
    client_ctx: ssl.SSLContext
    server_ctx: ssl.SSLContext
    limiter: trio.CapacityLimiter
    registry: SessionRegistry | None = None
    on_summary: Callable[[str, tuple[str, int], SessionSummary], None] | None = None
    #: SHA-256 of every stored credential the trust store has seen (refresh_trust).
    loaded_credentials: set[bytes] = field(default_factory=set)
    #: Caps on unauthenticated connections (read by serve_sync when it starts).
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: The summaries of sessions in flight, by (peer key, direction): read for progress
    #: (``SessionSummary.progress``); a session leaves it when it ends.
    in_flight: dict[tuple[bytes, str], SessionSummary] = field(default_factory=dict)


def refresh_trust(endpoint: Endpoint) -> None:
    """Give the trust store the credentials stored since it was loaded.

    Another process may add one to this home while it serves (``meshsync authority
    revoke --home`` on the serving home): without this a revoked device could still
    connect, and its changes be accepted, until a restart. Invalid blobs are skipped
    as :func:`meshsync.host.local.load_trust` skips them. Call with the node's limiter.
    """
    adder = getattr(endpoint.node.trust, "add", None)
    if adder is None:
        return
    for blob in endpoint.node.store.credentials():
        digest = sha256(blob)
        if digest not in endpoint.loaded_credentials:
            with contextlib.suppress(AuthorizationError):
                adder(blob)
            endpoint.loaded_credentials.add(digest)


async def _handshake(stream: trio.SSLStream[Any], endpoint: Endpoint,
                     deadline: float | None = None) -> bytes:
    """Complete TLS and check the peer's chain, revocation, role and scope.

    ``deadline`` (trio time) ends the TLS handshake; default
    :data:`HANDSHAKE_TIMEOUT_S` from now. Returns the peer's device key. Raises
    :class:`TransportError` (stage ``tls`` or ``identity``) and tells the peer why when
    it is an identity refusal.
    """
    if deadline is None:
        deadline = trio.current_time() + HANDSHAKE_TIMEOUT_S
    try:
        with trio.fail_at(deadline):
            await stream.do_handshake()
    except trio.TooSlowError as exc:
        raise TransportError("tls", "TLS handshake timed out") from exc
    except (ssl.SSLError, trio.BrokenResourceError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        await _send_pending_alert(stream)
        raise TransportError("tls", describe_ssl_error(cause or exc)) from exc
    chain = peer_chain_der(stream._ssl_object)
    checker = getattr(endpoint.node.trust, "peer_identity", None)
    if checker is None:
        raise TransportError("identity", "this node has no trust store (not enrolled)")
    await trio.to_thread.run_sync(refresh_trust, endpoint, limiter=endpoint.limiter)
    try:
        key, _role, _scope = check_peer(endpoint.node, chain)  # at the node's time
    except AuthorizationError as exc:
        revocations = await trio.to_thread.run_sync(revocations_of, endpoint.node, chain,
                                                    limiter=endpoint.limiter)
        await _tell(stream, "identity", exc.detail, revocations)
        raise TransportError("identity", exc.detail) from exc
    if key == endpoint.node.key.public_key:
        raise TransportError("self", "connected to this device itself")
    return bytes(key)


async def _send_pending_alert(stream: trio.SSLStream[Any]) -> None:
    """Send the TLS alert OpenSSL queued when our side failed the handshake.

    trio breaks the stream without sending it (python-trio/trio#3413, open), so the
    peer would see only "EOF occurred in violation of protocol" instead of why it
    was refused (unknown CA, certificate required; RFC 8446 §6.2).
    """
    outgoing = getattr(stream, "_outgoing", None)
    pending = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if pending:
        with trio.move_on_after(2), contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.transport_stream.send_all(pending)


def revocations_of(node: Node, chain: list[bytes]) -> list[bytes]:
    """The revocations ``node`` holds of the device whose certificate chain (DER, leaf
    first) is ``chain``: sent with an identity refusal, so a revoked device learns it."""
    try:
        key = parse_blob(chain[0])[0].device_key if chain else None
    except AuthorizationError:
        return []
    if key is None:
        return []
    found = [b for b in node.store.credentials()
             if is_revocation(b) and decode_revocation(b).device_key == key]
    return found[:MAX_ERROR_CREDENTIALS]


async def _tell(stream: trio.abc.Stream, stage: str, reason: str,
                credentials: list[bytes] | None = None) -> None:
    try:
        with trio.move_on_after(2):
            await stream.send_all(fr.encode_frame(
                Error(stage, reason[:500], tuple(credentials or ())).to_wire()))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _close(stream: trio.abc.AsyncResource) -> None:
    with trio.move_on_after(2) as scope, contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
        scope.shield = True
        await stream.aclose()


async def _session(stream: trio.SSLStream[Any], endpoint: Endpoint, direction: str,
                   admitted: Callable[[], None] | None = None,
                   deadline: float | None = None) -> SessionSummary:
    """Handshake (by ``deadline``), call ``admitted()`` once the peer is authenticated,
    run the session."""
    peer = await _handshake(stream, endpoint, deadline)
    if admitted is not None:
        admitted()
    registry = endpoint.registry
    if registry is not None:
        busy = registry.acquire(peer, direction)
        if busy is not None:
            await _tell(stream, "busy", busy)
            raise TransportError("busy", f"{short_id(peer)}: {busy}")
    try:
        session = Peer(endpoint.node, endpoint.config, now_ms=now_ms(), peer_key=peer)
        endpoint.in_flight[(peer, direction)] = session.summary
        summary = await run_session(stream, session, endpoint.limiter)
        summary.peer = summary.peer or peer  # known from TLS even if no HELLO came
        if summary.refusal_credentials:  # the peer refused us: our revocation, maybe
            await trio.to_thread.run_sync(
                learn_revocations, endpoint.node, summary.refusal_credentials,
                f"refusal by {short_id(peer)}", limiter=endpoint.limiter)
        return summary
    finally:
        endpoint.in_flight.pop((peer, direction), None)
        if registry is not None:
            registry.release(peer, direction)


async def handle_connection(tcp: trio.SocketStream, endpoint: Endpoint,
                            admission: Admission | None = None,
                            refusals: RefusalLog | None = None) -> None:
    """Serve one accepted connection; log its outcome; never raise for peer faults.

    With ``admission`` the connection counts as unauthenticated (and may be shed) until
    its peer is authenticated; ``refusals`` rate-limits the refusal lines.
    """
    try:
        address = tcp.socket.getpeername()
    except OSError:
        address = ("?", 0)
    refusals = refusals or RefusalLog(log, endpoint.limits.refusal_log_interval_s)
    stream: trio.abc.AsyncResource = tcp
    with trio.CancelScope() as scope:
        ticket = admission.admit(address[0], scope) if admission is not None else None
        try:
            stream = await _serve_admitted(tcp, endpoint, address, admission, ticket)
        except TransportError as exc:
            refusals.refused(address, exc.stage, exc.detail)
            _drop_tracebacks(exc)
        except MeshsyncError as exc:
            log.error("sync with %s:%s failed: %s", address[0], address[1], exc)
        finally:
            if admission is not None and ticket is not None:
                admission.release(ticket)
            await _close(stream)
            _break_cycle(stream)
    if ticket is not None and ticket.shed_reason is not None:
        refusals.refused(address, "load", f"shed: {ticket.shed_reason}")


def _break_cycle(stream: trio.abc.AsyncResource) -> None:
    """Free a closed ``trio.SSLStream`` (and its OpenSSL object) now, not at the next
    full garbage collection: it refers to itself through its handshake guard (a bound
    method, trio 0.35 ``_ssl.py``), and in a flood such cycles piled up by thousands."""
    if isinstance(stream, trio.SSLStream):
        vars(stream).pop("_handshook", None)


def _drop_tracebacks(exc: BaseException | None) -> None:
    """Clear the tracebacks along ``exc``'s chain: their frames hold the connection's
    TLS stream in a reference cycle, which only the garbage collector would free."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


async def _serve_admitted(tcp: trio.SocketStream, endpoint: Endpoint, address: Any,
                          admission: Admission | None, ticket: Ticket | None
                          ) -> trio.abc.AsyncResource:
    """Wait for the peer's first byte, then TLS and the session. Returns the stream to
    close (``tcp`` until TLS starts). Raises :class:`TransportError` for refusals."""
    deadline = trio.current_time() + HANDSHAKE_TIMEOUT_S
    with trio.move_on_at(deadline) as waiting:
        await trio.lowlevel.wait_readable(tcp.socket)
    if waiting.cancelled_caught:
        raise TransportError("tls", "TLS handshake timed out (the peer sent nothing)")
    try:
        first = await tcp.socket.recv(1, socket.MSG_PEEK)
    except OSError as exc:
        raise TransportError("tls", f"connection lost before TLS: {exc}") from exc
    if not first:
        raise TransportError("tls", "the peer closed the connection before TLS")
    if ticket is not None:
        ticket.idle = False
    stream = trio.SSLStream(tcp, endpoint.server_ctx, server_side=True)

    def admitted() -> None:
        if admission is not None and ticket is not None:
            admission.release(ticket)

    try:
        summary = await _session(stream, endpoint, INCOMING, admitted, deadline)
    except BaseException:
        await _close(stream)
        _break_cycle(stream)
        raise
    _log_summary(address, summary)
    if endpoint.on_summary is not None:
        endpoint.on_summary(INCOMING, (address[0], address[1]), summary)
    return stream


def _log_summary(address: Any, summary: SessionSummary) -> None:
    who = short_id(summary.peer) if summary.peer else "?"
    if summary.error:
        log.warning("session with %s (%s) failed: %s", who, address[0], summary.error)
    else:
        log.info("synced with %s (%s): sent %d, received %d changes%s, converged=%s", who,
                 address[0], summary.changes_sent, summary.changes_received,
                 _refused_text(summary), summary.converged)


def _refused_text(summary: SessionSummary) -> str:
    """``", refused 20000 (authorization 40, hash chain 19960)"``, or "" if none was."""
    report = summary.apply
    if not report.refused_total:
        return ""
    stages = ", ".join(f"{stage} {n}" for stage, n in sorted(report.refused_by_stage.items()))
    return f", refused {report.refused_total} ({stages})"


async def serve_sync(endpoint: Endpoint, host: str, port: int, *,
                     task_status: trio.TaskStatus[list[trio.SocketListener]]
                     = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` and serve sync sessions forever.

    Calls ``task_status.started(listeners)`` once bound (port 0 picks a free port).
    Unauthenticated connections are held within ``endpoint.limits``.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    admission = Admission(endpoint.limits)
    refusals = RefusalLog(log, endpoint.limits.refusal_log_interval_s)

    async def handler(tcp: trio.SocketStream) -> None:
        await handle_connection(tcp, endpoint, admission, refusals)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refusals.run)
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)


async def sync_with(endpoint: Endpoint, host: str, port: int,
                    connect_timeout_s: float = 10.0) -> SessionSummary:
    """Dial ``host:port``, run one session both ways, return its summary.

    Raises :class:`TransportError` if the connection or TLS fails or the peer's
    identity is refused; protocol failures are in ``summary.error``.
    """
    try:
        with trio.fail_after(connect_timeout_s):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError as exc:
        raise TransportError("connect", f"cannot reach {host}:{port}: timed out after "
                                        f"{connect_timeout_s:g} s") from exc
    except OSError as exc:
        raise TransportError("connect", f"cannot reach {host}:{port}: "
                                        f"{exc.strerror or exc}") from exc
    stream = trio.SSLStream(tcp, endpoint.client_ctx, server_hostname=None)
    try:
        summary = await _session(stream, endpoint, OUTGOING)
        _log_summary((host, port), summary)
        return summary
    finally:
        await _close(stream)
        _break_cycle(stream)
