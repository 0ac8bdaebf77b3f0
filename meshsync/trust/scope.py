"""Scopes: partition prefixes that limit what a certificate may do.

A partition is a ``/``-separated region path such as ``mimika/jila/diloa/tps-003``.
A scope is a partition prefix, matched by **whole segments**: ``mimika/jila``
contains ``mimika/jila`` and ``mimika/jila/diloa`` but not ``mimika/jilab``.
The empty scope ``""`` contains every partition.
"""

from __future__ import annotations

from functools import lru_cache

from meshsync.model.change import check_partition
from meshsync.model.errors import UsageError
from meshsync.model.limits import MAX_NAME_CHARS


def validate_scope(scope: str) -> str:
    """Return ``scope`` if it is a well-formed partition prefix.

    ``scope``: ``""`` (everything) or non-empty segments joined by ``/``, at most
    :data:`~meshsync.model.limits.MAX_NAME_CHARS` characters, no control characters.
    Raises :class:`UsageError` naming the problem otherwise.
    """
    if not isinstance(scope, str):
        raise UsageError(f"scope must be a string, not {type(scope).__name__}")
    if scope == "":
        return scope
    if len(scope) > MAX_NAME_CHARS:
        raise UsageError(f"scope longer than {MAX_NAME_CHARS} characters: {scope[:40]!r}...")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in scope):
        raise UsageError(f"scope contains a control character: {scope!r}")
    if any(segment == "" for segment in scope.split("/")):
        raise UsageError(
            f"scope {scope!r} has an empty segment (no leading, trailing or double '/')"
        )
    return scope


def check_scope(scope: str) -> str:
    """Return ``scope`` if a command may certify it: ``""`` or a partition path as
    :func:`meshsync.model.change.check_partition` accepts it (lower-case segments of
    letters, digits, ``.``, ``_``, ``-``; no empty, ``.`` or ``..`` segment).

    Stricter than :func:`validate_scope` (the certificate profile, which carries any
    text percent-encoded): a scope outside this syntax contains no partition a
    change can have, so its device could never write. Raises :class:`UsageError`
    naming the scope otherwise.
    """
    validate_scope(scope)
    if scope == "":
        return scope
    try:
        check_partition(scope)
    except UsageError:
        shown = scope if len(scope) <= 60 else scope[:60] + "..."
        raise UsageError(f"invalid scope {shown!r}: use a partition prefix of lower-case "
                         "path segments like mimika/jila/diloa") from None
    return scope


@lru_cache(maxsize=65536)
def scope_contains(scope: str, partition: str) -> bool:
    """True if ``partition`` (or a narrower scope) lies inside ``scope``.

    Segment-wise prefix test: ``scope_contains("mimika/jila", "mimika/jila/diloa")``
    is true, ``scope_contains("mimika/jila", "mimika/jilab")`` is false, and
    ``scope_contains("", anything)`` is true. Never raises.
    """
    if scope == "":
        return True
    if partition == scope:
        return True
    return partition.startswith(scope + "/")
