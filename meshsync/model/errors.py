"""Errors raised by meshsync, split by who is at fault (as h11 does).

* :class:`UsageError` and its subclasses: the local caller asked for something
  impossible (bad arguments, unknown record, oversized local edit).
* :class:`RemoteError` and its subclasses: data that arrived from elsewhere (a
  bundle, a peer) is wrong. Every refusal names the stage that failed, so a user
  can tell a corrupted file (``decode``) from a forged one (``signature``) or a
  broken feed (``hash chain``).
"""

from __future__ import annotations


class MeshsyncError(Exception):
    """Base class of every error meshsync raises on purpose."""


class UsageError(MeshsyncError):
    """The local caller misused the API: wrong argument, missing record, bad config."""


class NotFoundError(UsageError):
    """A record, feed or file the caller named does not exist."""


class TooLargeError(UsageError):
    """A local edit exceeds a documented size limit (see :mod:`meshsync.model.limits`)."""


class ValidationError(UsageError):
    """A local edit failed its collection's validator.

    ``errors`` is a list of ``(field, message)`` pairs, one per problem.
    """

    def __init__(self, collection: str, errors: list[tuple[str, str]]) -> None:
        self.collection = collection
        self.errors = errors
        detail = "; ".join(f"{f}: {m}" if f else m for f, m in errors)
        super().__init__(f"{collection}: {detail}")


class SealedError(UsageError):
    """A sealed bundle this device cannot open: it is not one of the bundle's recipients
    (another district, revoked after it was sealed, or an unenrolled home), or the
    bundle's encryption does not authenticate (altered). Nothing of it was imported but
    the revocations it carries in clear (docs/protocol.md, "Sealed bundles")."""


class StorageError(MeshsyncError):
    """The store failed (disk full, corrupt file); the current transaction was rolled back."""


class StorageLowError(StorageError):
    """Free space on the store's disk is below the reserve kept for local edits, so
    received changes are refused (nothing of the batch is stored); local edits go on
    using the reserve (docs/failure-cases.md B17). Syncing resumes once space is freed."""


class ConcurrentAppendError(StorageError):
    """Another process sharing the store wrote the same feed head or record first.

    Only stores shared by several processes raise it (PostgreSQL at central). The
    transaction was rolled back and nothing of it is stored; running the same work
    again in a new transaction is safe and is the expected response: changes the
    other process stored are then recognised as duplicates.
    """


class RemoteError(MeshsyncError):
    """Received data is wrong. ``stage`` names the receive-pipeline stage that refused it.

    Stages, in pipeline order (docs/protocol.md): ``size``, ``decode``, ``signature``,
    ``authorization``, ``hash chain``, ``fork``, ``clock``, ``validation``.
    """

    stage = "remote"

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        if stage is not None:
            self.stage = stage
        super().__init__(f"{self.stage}: {message}")
        self.detail = message


class DecodeError(RemoteError):
    """Bytes that are not a well-formed meshsync structure (truncated, wrong types)."""

    stage = "decode"


class FrameTooLargeError(RemoteError):
    """A received item exceeds the size limit before it is even decoded."""

    stage = "size"


class SignatureError(RemoteError):
    """An Ed25519 signature does not verify over the change's canonical bytes."""

    stage = "signature"


class AuthorizationError(RemoteError):
    """The author is not allowed to write this change (no certificate, scope, revoked)."""

    stage = "authorization"


class ChainError(RemoteError):
    """A change does not follow its feed: a gap in ``seq`` or a wrong previous hash."""

    stage = "hash chain"


class ForkError(RemoteError):
    """A second, different change at a ``(author, partition, seq)`` already held."""

    stage = "fork"
