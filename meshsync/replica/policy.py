"""Hooks a node consults: who may write (authorizer) and what is valid (validators)."""

from __future__ import annotations

from typing import Any, Protocol


class Authorizer(Protocol):
    """Decides whether an author may write a change (the certificate stage, design §6)."""

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        """Return if allowed; raise :class:`~meshsync.model.errors.AuthorizationError` if not.

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

        A validator that also needs the record's partition (the coklit one checks
        that a voter is kept under its own TPS) sets ``takes_partition = True`` and
        accepts a ``partition`` keyword: see :func:`validate`.
        """
        ...


def validate(validator: Validator, partition: str, key: str, fields: dict[str, Any], *,
             partial: bool) -> list[tuple[str, str]]:
    """Run ``validator`` on one record or op of ``partition``.

    The partition is passed (as ``partition=``) only to validators whose
    ``takes_partition`` attribute is true; the partition of a received change is
    part of what its author signed, so the verdict is still the same on every device.
    """
    if getattr(validator, "takes_partition", False):
        call: Any = validator
        result: list[tuple[str, str]] = call(key, fields, partial=partial,
                                             partition=partition)
        return result
    return validator(key, fields, partial=partial)
