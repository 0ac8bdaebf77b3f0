"""Errors of the I/O edge."""

from __future__ import annotations

from meshsync.model.errors import MeshsyncError


class TransportError(MeshsyncError):
    """The connection failed: refused, reset, timed out, or TLS refused the peer.

    ``stage`` is ``connect``, ``tls``, ``identity`` or ``stream``.
    """

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        self.detail = message
        super().__init__(f"{stage}: {message}")
