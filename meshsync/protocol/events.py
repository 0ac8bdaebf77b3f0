"""Events a :class:`~meshsync.protocol.session.SyncSession` reports, and its summary.

Two kinds. *Reports* (:data:`Event`) only inform: the peer's hello, a frame applied,
the end. *Requests* (:data:`Request`) ask the session's owner
(:class:`meshsync.protocol.peer.Peer`) to read or write its node; the session reads no
further input until the owner answers with the method each request names, and then
goes on by itself (docs/architecture.md §3: the core is sans-I/O, the owner holds the
node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshsync.model.change import Change, FeedId
from meshsync.model.identity import device_id
from meshsync.replica.receive import ApplyReport


@dataclass
class SessionSummary:
    """What one sync session did. Sizes are bytes on the session stream (after TLS
    decryption, including framing); times are milliseconds."""

    peer: bytes = b""
    peer_role: str = ""
    changes_sent: int = 0
    changes_received: int = 0
    duplicates: int = 0
    credentials_sent: int = 0
    credentials_received: int = 0
    receipts_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    converged: bool = False
    forked_heads: int = 0
    """Feeds whose head seq both sides held as different changes (a fork the VV
    message's head checks showed; each side sent its head change, and the receiver
    kept the fork's evidence)."""
    clock_skew_ms: int = 0
    peer_says_skew_ms: int = 0
    clock_warnings: list[str] = field(default_factory=list)
    apply: ApplyReport = field(default_factory=ApplyReport)
    peer_vv: dict[tuple[bytes, str], int] = field(default_factory=dict)
    scope: str | None = None
    started_ms: int = 0
    finished_ms: int = 0
    error: str | None = None
    #: Credentials the peer sent with its refusal (an ERROR frame): the revocations of
    #: this device, for the host to store (meshsync.net.endpoints).
    refusal_credentials: list[bytes] = field(default_factory=list)
    changes_offered: int | None = None
    """Changes in the shared scope the peer's version vector holds beyond this node's
    (None until the VV message came): what the session should receive."""
    changes_to_send: int | None = None
    """Changes this node holds in the shared scope beyond the peer's vector (None
    until the VV message came): what the session should send."""

    def progress(self) -> dict[str, Any]:
        """How far a session in flight is: changes received against
        ``changes_offered``, sent against ``changes_to_send`` (either None before the
        version vectors were exchanged), bytes each way so far."""
        return {"peer": device_id(self.peer) if self.peer else None,
                "changes_received": self.changes_received + self.duplicates,
                "changes_offered": self.changes_offered,
                "changes_sent": self.changes_sent, "changes_to_send": self.changes_to_send,
                "bytes_received": self.bytes_received, "bytes_sent": self.bytes_sent,
                "started_ms": self.started_ms}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "peer": device_id(self.peer) if self.peer else None, "peer_role": self.peer_role,
            "changes_sent": self.changes_sent, "changes_received": self.changes_received,
            "duplicates": self.duplicates, "credentials_sent": self.credentials_sent,
            "credentials_received": self.credentials_received,
            "receipts_received": self.receipts_received,
            "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "frames_sent": self.frames_sent, "frames_received": self.frames_received,
            "converged": self.converged, "forked_heads": self.forked_heads,
            "clock_skew_ms": self.clock_skew_ms,
            "peer_says_skew_ms": self.peer_says_skew_ms,
            "clock_warnings": self.clock_warnings,
            "refused": self.apply.to_json()["refused"],
            "refused_total": self.apply.refused_total,
            "refused_by_stage": dict(sorted(self.apply.refused_by_stage.items())),
            "invalid": self.apply.to_json()["invalid"],
            "seconds": max(0, self.finished_ms - self.started_ms) / 1000,
            "error": self.error,
        }


@dataclass(frozen=True)
class PeerHello:
    """The peer introduced itself. ``clock_skew_ms`` = peer clock minus ours."""

    device: bytes
    role: str
    scope: str
    clock_skew_ms: int


@dataclass(frozen=True)
class ChangesApplied:
    """A frame of changes from the peer was committed."""

    report: ApplyReport


@dataclass(frozen=True)
class SessionDone:
    """The session ended normally; ``summary.converged`` says if both hold the same."""

    summary: SessionSummary


@dataclass(frozen=True)
class SessionFailed:
    """The session ended on an error. ``by_peer``: the peer reported it to us."""

    stage: str
    reason: str
    by_peer: bool
    summary: SessionSummary


Event = PeerHello | ChangesApplied | SessionDone | SessionFailed


@dataclass(frozen=True)
class HoldingsWanted:
    """What does the node hold over ``scope``? Answer with
    :meth:`~meshsync.protocol.session.SyncSession.hold` and a
    :class:`~meshsync.protocol.meta.Holdings`."""

    scope: str


@dataclass(frozen=True)
class ChangesWanted:
    """Which changes to send: those held in ``scope`` beyond ``since`` (feed -> seq the
    peer holds), feed by feed in seq order; only of ``feed`` when it is set (the peer
    asked for that feed again in full). Answer with
    :meth:`~meshsync.protocol.session.SyncSession.send_changes` and an iterator of
    :class:`~meshsync.model.change.Change` (read lazily, as frames go out)."""

    since: dict[FeedId, int]
    scope: str
    feed: FeedId | None = None


@dataclass(frozen=True)
class CredentialsReceived:
    """Store these certificate and revocation blobs (each checked by the node; a
    refused one is a warning, never fatal). Answer with
    :meth:`~meshsync.protocol.session.SyncSession.stored`."""

    blobs: tuple[bytes, ...]


@dataclass(frozen=True)
class ReceiptsReceived:
    """Store these custody receipt blobs (signatures unchecked yet; a refused one is a
    warning). Answer with :meth:`~meshsync.protocol.session.SyncSession.stored`."""

    blobs: tuple[bytes, ...]


@dataclass(frozen=True)
class ChangesReceived:
    """Apply frame ``batch`` of the peer's changes in one transaction. Answer with
    :meth:`~meshsync.protocol.session.SyncSession.acknowledge` and the apply report
    once it is committed; a refusal of the peer's data (a bad signature) goes to
    :meth:`~meshsync.protocol.session.SyncSession.refuse`."""

    batch: int
    changes: list[Change]
    source: str


@dataclass(frozen=True)
class EndWanted:
    """Everything is exchanged: issue a custody receipt for ``scope`` if
    ``issue_receipt`` (gateways and central), then say what the node holds now.
    Answer with :meth:`~meshsync.protocol.session.SyncSession.conclude`."""

    scope: str
    issue_receipt: bool


Request = (HoldingsWanted | ChangesWanted | CredentialsReceived | ReceiptsReceived
           | ChangesReceived | EndWanted)
