"""What travels beside changes in a session: credentials and custody receipts.

Both are exchanged the same way: each side lists short digests of what it holds
(in the VV message), then sends the blobs the other lacks. A credential or receipt
the receiver refuses is reported in the session summary, never fatal: they are
relayed data, and one bad blob must not stop the changes behind it.
"""

from __future__ import annotations

from typing import Any

from meshsync import custody
from meshsync.errors import RemoteError
from meshsync.identity import sha256
from meshsync.node import Node
from meshsync.receipt import decode_receipt
from meshsync.store.base import in_prefix

DIGEST_BYTES = 16


def short_digest(blob: bytes) -> bytes:
    """The 16-byte digest a peer uses to say it holds ``blob``."""
    return sha256(blob)[:DIGEST_BYTES]


def _overlaps(a: str, b: str) -> bool:
    return in_prefix(a, b) or in_prefix(b, a)


class MetaExchange:
    """Credentials and receipts of ``node`` relevant to a session over ``scope``."""

    def __init__(self, node: Node, scope: str | None) -> None:
        self.node, self.scope = node, scope

    def credentials(self) -> list[bytes]:
        """Every credential (certificates and revocations travel everywhere)."""
        return self.node.store.credentials()

    def receipts(self) -> list[bytes]:
        """Receipts whose scope overlaps the session's shared scope."""
        if self.scope is None:
            return []
        out = []
        for blob in self.node.store.receipts():
            try:
                if _overlaps(decode_receipt(blob).scope, self.scope):
                    out.append(blob)
            except RemoteError:
                continue
        return out

    @staticmethod
    def digests(blobs: list[bytes]) -> list[bytes]:
        """Sorted short digests of ``blobs``."""
        return sorted(short_digest(b) for b in blobs)

    @staticmethod
    def missing(blobs: list[bytes], peer_has: set[bytes]) -> list[bytes]:
        """The blobs whose digest the peer did not list."""
        return [b for b in blobs if short_digest(b) not in peer_has]

    def accept_credentials(self, blobs: list[Any], warnings: list[str]) -> int:
        """Keep new credentials; returns how many were new."""
        new = 0
        for blob in blobs:
            try:
                new += bool(self.node.add_credential(blob))
            except RemoteError as exc:
                warnings.append(f"credential refused: {exc.detail}")
        return new

    def accept_receipts(self, blobs: list[Any], warnings: list[str]) -> int:
        """Keep receipts newer than those held; returns how many were stored."""
        new = 0
        with self.node.store.transaction():
            for blob in blobs:
                try:
                    new += bool(custody.add_receipt(self.node, blob))
                except RemoteError as exc:
                    warnings.append(f"receipt refused: {exc.detail}")
        return new

    def issue(self) -> bytes | None:
        """Issue this node's receipt for the shared scope (gateway and central only)."""
        if self.scope is None:
            return None
        with self.node.store.transaction():
            return custody.issue_receipt(self.node, self.scope)
