"""Events a :class:`~meshsync.protocol.session.SyncSession` reports, and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    clock_skew_ms: int = 0
    peer_says_skew_ms: int = 0
    clock_warnings: list[str] = field(default_factory=list)
    apply: ApplyReport = field(default_factory=ApplyReport)
    peer_vv: dict[tuple[bytes, str], int] = field(default_factory=dict)
    scope: str | None = None
    started_ms: int = 0
    finished_ms: int = 0
    error: str | None = None

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
            "converged": self.converged, "clock_skew_ms": self.clock_skew_ms,
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
