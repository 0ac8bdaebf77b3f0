"""Hooks a node consults: who may write (authorizer) and what is valid (validators)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from meshsync.model import codec


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


def judge_of(validator: Validator) -> object:
    """What a verdict of ``validator`` stands for: the version that judges (a validator
    with a ``judge()`` method, e.g. one built from schema documents, names the version
    it applies now), else the validator itself."""
    judge = getattr(validator, "judge", None)
    return validator if judge is None else judge()


@dataclass(frozen=True)
class Judged:
    """Whole records a caller has already found valid (``partial=False``), so that
    :meth:`meshsync.replica.node.Node.write` need not judge them again (the coklit
    import checks every row as it reads the file, to list the bad ones by line).

    ``judge``: :func:`judge_of` the validator that judged them; ``records``:
    ``(partition, collection, key)`` -> the canonical encoding
    (:func:`meshsync.model.codec.pack` of canonical fields) of the fields found valid.
    A write skips its own check of a record only if the validator it would use has
    the same judge and the record's resulting fields encode to exactly those bytes;
    anything else is checked as usual.
    """

    judge: object
    records: Mapping[tuple[str, str, str], bytes]

    def covers(self, validator: Validator, rkey: tuple[str, str, str],
               fields: dict[str, Any]) -> bool:
        """True if ``fields`` of ``rkey`` were found valid by ``validator`` as it is now."""
        judged = self.records.get(rkey)
        # compared encoded: as values, 1 == 1.0 == True, but a validator tells them apart
        return (judged is not None and judge_of(validator) is self.judge
                and codec.pack(fields) == judged)
