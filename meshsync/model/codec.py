"""Canonical msgpack encoding.

Signed bytes must be reproducible by every receiver, so meshsync encodes with one
canonical form: msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md)
with the shortest integer form (msgpack-python's default), float64 for every float,
``bin`` for bytes, ``str`` for text, and map keys (always text) sorted by their UTF-8
bytes. Receivers never verify a signature over bytes they were sent: they decode,
then re-encode canonically and verify over that, so a non-canonical sender fails
the signature check rather than slipping through.

Field values allowed in records: ``None``, ``bool``, ``int`` in [-2**63, 2**64),
``float``, ``str``, ``bytes``, and lists and string-keyed maps of these.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from meshsync.model.errors import DecodeError, UsageError

Value = None | bool | int | float | str | bytes | list[Any] | dict[str, Any]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_MAX_DEPTH = 16


#: Values returned as they are (exact types: a subclass goes the long way).
_PLAIN = frozenset({type(None), bool, float, str, bytes})


def canonical_value(value: Any, depth: int = 0) -> Value:
    """Return ``value`` with every map's keys sorted; UsageError for types msgpack can't carry.

    Tuples become lists. A list or map at depth 16 (the record's fields map is depth
    0) is refused, as receivers refuse it (:func:`meshsync.model.change.check_value`).
    """
    kind = type(value)
    if kind in _PLAIN:
        plain: Value = value
        return plain
    if kind is dict:  # the common case, a record's fields: scalars stay where they are
        if depth >= _MAX_DEPTH:
            raise UsageError(f"value nested too deeply (more than {_MAX_DEPTH} levels)")
        for k in value:
            if type(k) is not str and not isinstance(k, str):
                raise UsageError(f"map keys must be text, got {type(k).__name__}")
        # str order is code point order, which UTF-8 byte order preserves (surrogates
        # included, as "surrogatepass" encodes them): sorted(value) == by _utf8
        return {k: v if type(v) in _PLAIN or (type(v) is int and _INT_MIN <= v <= _INT_MAX)
                else canonical_value(v, depth + 1) for k, v in sorted(value.items())}
    return _canonical_other(value, depth)


def _canonical_other(value: Any, depth: int) -> Value:
    """:func:`canonical_value` of anything but an exact dict or plain scalar."""
    if value is None or isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise UsageError(f"integer out of range: {value}")
        return value
    if isinstance(value, list | tuple | dict) and depth >= _MAX_DEPTH:
        # The receivers' rule (change.check_value): no container at depth 16.
        raise UsageError(f"value nested too deeply (more than {_MAX_DEPTH} levels)")
    if isinstance(value, list | tuple):
        return [canonical_value(v, depth + 1) for v in value]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise UsageError(f"map keys must be text, got {type(k).__name__}")
        return {k: canonical_value(value[k], depth + 1) for k in sorted(value, key=_utf8)}
    raise UsageError(f"unsupported value type {type(value).__name__}")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class _Packers(threading.local):
    """One reusable ``msgpack.Packer`` per thread (a Packer is not thread-safe;
    reusing one saves its buffer set-up: ~30% of packing a voter record)."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True)


_packers = _Packers()
_KEEP_BUFFER = 256 * 1024  # bytes; a packer whose buffer grew past this is replaced


def pack(obj: Any) -> bytes:
    """Encode an already-canonical structure (see :func:`canonical_value`).

    Same bytes as ``msgpack.packb(obj, use_bin_type=True)``; raises what it raises
    (``TypeError`` for a type msgpack cannot carry, ``ValueError`` when too deep).
    """
    out: bytes = _packers.packer.pack(obj)  # a failed pack leaves the packer empty
    if len(out) > _KEEP_BUFFER:  # the packer's buffer grew as large: let it go
        _packers.packer = msgpack.Packer(use_bin_type=True)
    return out


def unpack(data: bytes, *, max_bytes: int) -> Any:
    """Decode one msgpack object; :class:`DecodeError` if malformed, trailing or too large."""
    if len(data) > max_bytes:
        raise DecodeError(f"item of {len(data)} bytes exceeds limit of {max_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, RecursionError) as exc:  # msgpack's errors are ValueErrors
        raise DecodeError(f"malformed msgpack: {describe_error(exc)}") from exc


MAX_MSGPACK_DEPTH = 1024  # msgpack's C unpacker stack (its pure-Python one recurses)


def describe_error(exc: BaseException) -> str:
    """Name the cause of a msgpack decoding failure in words (never an empty string).

    ``exc`` is what ``msgpack.unpackb`` or ``Unpacker`` raised: msgpack's own errors
    leave their message empty for too-deep nesting and reserved type bytes.
    """
    if isinstance(exc, msgpack.StackError | RecursionError):
        return f"nested more than {MAX_MSGPACK_DEPTH} levels deep"
    if isinstance(exc, msgpack.FormatError):
        return "a reserved or unknown msgpack type byte (such as 0xc1)"
    if isinstance(exc, msgpack.ExtraData):
        return "trailing bytes after the item"
    text = str(exc).removeprefix("Unpack failed: ")
    return text or type(exc).__name__
