"""Hooks a node consults: who may write (authorizer) and what is valid (validators)."""

from __future__ import annotations

from typing import Any, Protocol


class Authorizer(Protocol):
    """Decides whether an author may write a change (the certificate stage, design §6)."""

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        """Return if allowed; raise :class:`~meshsync.errors.AuthorizationError` if not.

        ``at_ms`` is the change's HLC wall time in milliseconds since the epoch.
        """


class OpenTrust:
    """Authorizer of a device with no trusted authority installed: accepts every author.

    A node runs with it only until it is enrolled (``meshsync enroll``); from then on
    :class:`meshsync.trust.TrustStore` checks every change.
    """

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        """Accept everything."""


class Validator(Protocol):
    """Checks record fields for one collection (e.g. the coklit ``voters`` validator)."""

    def __call__(self, key: str, fields: dict[str, Any], *, partial: bool) -> list[
            tuple[str, str]]:
        """Return ``(field, message)`` pairs, empty when valid.

        ``partial`` is False for a local edit (``fields`` is the whole record as it
        would be after the edit) and True for a received op (``fields`` is only what
        the op writes: received changes are judged on their own content, so every
        device reaches the same verdict whatever order data arrives in).
        """
        ...
