"""Per-node settings of a sync session (:class:`meshsync.protocol.session.SyncSession`)."""

from __future__ import annotations

from dataclasses import dataclass

from meshsync.protocol.frames import FRAME_TARGET_BYTES


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
    frame_target: int = FRAME_TARGET_BYTES
    issue_receipts: bool = False
    compress: bool = True
    """Offer the preset zlib dictionaries in the HELLO (docs/protocol.md, "Compressed
    frames"); off: this side's frames, and the peer's, go uncompressed."""
