"""Ops and changes: the signed unit of meshsync, and its canonical bytes.

A *change* is a batch of ops by one author in one partition. Its canonical body
(see :mod:`meshsync.model.codec`) is the msgpack array::

    [1, author(bin 32), partition(str), seq(uint >= 1), prev(bin 32, or bin 0 at seq 1),
     hlc(uint64), [op, ...]]
    op  = [0, collection, key, {field: value, ...}, pred]      # put
        | [1, collection, key, pred]                          # delete
    pred = [[hlc, author(bin 32)], ...]  sorted, no duplicates

The change's hash is SHA-256 of the body; its signature is Ed25519 (RFC 8032) over
``SIGN_CONTEXT + body``. Op ``i`` of a change has the op id ``(hlc + i, author)``.
``prev`` is the hash of the previous change in the same feed, so every feed
``(author, partition)`` is a hash chain.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from meshsync.model import codec
from meshsync.model.errors import DecodeError, FrameTooLargeError, TooLargeError, UsageError
from meshsync.model.hlc import MAX_HLC
from meshsync.model.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, DeviceKey, sha256, verify
from meshsync.model.limits import (
    MAX_CHANGE_BYTES,
    MAX_NAME_CHARS,
    MAX_OPS_PER_CHANGE,
    MAX_RECORD_BYTES,
)
from meshsync.model.text import Msg

FORMAT_VERSION = 1
SIGN_CONTEXT = b"meshsync change v1\x00"
PUT, DELETE = 0, 1
HASH_BYTES = 32
MAX_SEQ = (1 << 63) - 1  # stores keep seq in a signed 64-bit integer

OpId = tuple[int, bytes]
"""An op id: ``(hlc, author public key)``. Ordered by hlc, then author bytes."""

FeedId = tuple[bytes, str]
"""A feed: ``(author public key, partition)``."""

_PARTITION_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")


def check_partition(partition: str) -> str:
    """Return ``partition`` if it is a valid path like ``mimika/jila/diloa/tps-003``.

    Segments are lower-case letters, digits, ``.``, ``_`` and ``-``, separated by
    ``/``. Raises :class:`UsageError` otherwise.
    """
    if not isinstance(partition, str) or len(partition) > MAX_NAME_CHARS or not (
        _PARTITION_RE.match(partition)
    ):
        raise UsageError(Msg(
            "invalid partition %(partition)r: use lower-case path segments "
            "like mimika/jila/diloa/tps-003", partition=partition
        ))
    return partition


def check_name(kind: str, name: str) -> str:
    """Return ``name`` (a collection, key or field name) if non-empty text of at most
    256 characters; raises :class:`UsageError` naming ``kind`` otherwise."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise UsageError(Msg("invalid %(kind)s %(name)r: must be 1-%(max)d characters",
                             kind=kind, name=name, max=MAX_NAME_CHARS))
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UsageError(f"invalid {kind} {name!r}: not valid Unicode text") from exc
    return name


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``fields`` of record ``(collection, key)``, replacing the op ids in ``pred``."""

    collection: str
    key: str
    fields: dict[str, Any]
    pred: tuple[OpId, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete record ``(collection, key)`` as seen: a tombstone superseding ``pred``."""

    collection: str
    key: str
    pred: tuple[OpId, ...] = ()


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class Change:
    """A signed change. ``body`` is the canonical encoding; ``sig`` its signature."""

    author: bytes
    partition: str
    seq: int
    prev: bytes
    hlc: int
    ops: tuple[Op, ...]
    body: bytes
    sig: bytes
    hash: bytes = field(default=b"", compare=False)

    @property
    def feed(self) -> FeedId:
        """The feed this change extends."""
        return (self.author, self.partition)

    def op_id(self, index: int) -> OpId:
        """Id of op number ``index`` of this change."""
        return (self.hlc + index, self.author)

    def verify(self) -> None:
        """Check the signature; raises :class:`~meshsync.model.errors.SignatureError`."""
        verify(self.author, self.sig, SIGN_CONTEXT + self.body)


def _pred_list(pred: tuple[OpId, ...]) -> list[list[Any]]:
    return [[h, a] for h, a in sorted(set(pred))]


def _op_array(op: Op) -> list[Any]:
    if isinstance(op, Put):
        return [PUT, op.collection, op.key, op.fields, _pred_list(op.pred)]
    return [DELETE, op.collection, op.key, _pred_list(op.pred)]


def encode_body(
    author: bytes, partition: str, seq: int, prev: bytes, hlc: int, ops: tuple[Op, ...]
) -> bytes:
    """Canonical body bytes. ``ops`` must already hold canonical field values."""
    return codec.pack(
        [FORMAT_VERSION, author, partition, seq, prev, hlc, [_op_array(o) for o in ops]]
    )


def canonical_put(collection: str, key: str, fields: dict[str, Any],
                  pred: tuple[OpId, ...] = ()) -> Put:
    """Build a :class:`Put` from caller input, checking names, types and size.

    Raises :class:`UsageError` for bad names or values and :class:`TooLargeError`
    when the encoded fields exceed ``MAX_RECORD_BYTES`` (8 MiB).
    """
    check_name("collection", collection)
    check_name("key", key)
    for name in fields:
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS or not name.isascii():
            check_name("field name", name)  # a plain ASCII name passes it: not called
    clean = codec.canonical_value(fields)
    assert isinstance(clean, dict)
    try:
        size = len(codec.pack(clean))
    except UnicodeEncodeError as exc:  # lone surrogates: not valid Unicode text
        raise UsageError(f"record {collection}/{key}: a value is not valid text: {exc}") from exc
    if size > MAX_RECORD_BYTES:
        raise TooLargeError(
            f"record {collection}/{key} is {size} bytes; the limit is {MAX_RECORD_BYTES} bytes"
        )
    return Put(collection, key, clean, tuple(sorted(set(pred))))


def sign_change(
    key: DeviceKey, partition: str, seq: int, prev: bytes, hlc: int, ops: tuple[Op, ...]
) -> Change:
    """Encode and sign a change by ``key``. Raises TooLargeError past MAX_CHANGE_BYTES."""
    body = encode_body(key.public_key, partition, seq, prev, hlc, ops)
    if len(body) > MAX_CHANGE_BYTES:
        raise TooLargeError(f"change is {len(body)} bytes; the limit is {MAX_CHANGE_BYTES}")
    sig = key.sign(SIGN_CONTEXT + body)
    return Change(key.public_key, partition, seq, prev, hlc, ops, body, sig, sha256(body))


def make_change(
    author: bytes, partition: str, seq: int, prev: bytes, hlc: int,
    ops: tuple[Op, ...], sig: bytes, arrays: list[Any] | None = None,
) -> Change:
    """Rebuild a received change from its parts (re-encoding the canonical body).

    ``arrays``, if given, are ``ops`` already in canonical array form (see
    :func:`decode_ops`); the body is then packed from them directly.
    Checks the structure (:class:`DecodeError`) and that no record exceeds
    ``MAX_RECORD_BYTES`` (:class:`FrameTooLargeError`), not the signature.
    """
    _check_header(author, partition, seq, prev, hlc, len(ops))
    try:
        if arrays is None:
            body = encode_body(author, partition, seq, prev, hlc, ops)
        else:
            body = codec.pack([FORMAT_VERSION, author, partition, seq, prev, hlc, arrays])
    except OverflowError as exc:  # an int msgpack cannot carry (not from a decoder)
        raise DecodeError(f"integer out of range in change: {exc}") from exc
    if len(body) > MAX_CHANGE_BYTES:
        raise DecodeError(f"change is {len(body)} bytes; the limit is {MAX_CHANGE_BYTES}")
    if len(body) > MAX_RECORD_BYTES:  # only then can one of its records be too large
        _check_record_sizes(ops)
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise DecodeError("signature must be 64 bytes")
    return Change(author, partition, seq, prev, hlc, ops, body, sig, sha256(body))


def _check_record_sizes(ops: tuple[Op, ...]) -> None:
    for op in ops:
        size = len(codec.pack(op.fields)) if isinstance(op, Put) else 0
        if size > MAX_RECORD_BYTES:
            raise FrameTooLargeError(f"record {op.collection}/{op.key} is {size} bytes; "
                                     f"the limit is {MAX_RECORD_BYTES} bytes")


def _check_header(author: Any, partition: Any, seq: Any, prev: Any, hlc: Any,
                  nops: int) -> None:
    if not isinstance(author, bytes) or len(author) != PUBLIC_KEY_BYTES:
        raise DecodeError("author must be a 32-byte Ed25519 public key")
    try:
        check_partition(partition)
    except UsageError as exc:
        raise DecodeError(str(exc)) from exc
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise DecodeError(f"seq must be an integer in 1..{MAX_SEQ}, got {seq!r}")
    want = 0 if seq == 1 else HASH_BYTES
    if not isinstance(prev, bytes) or len(prev) != want:
        raise DecodeError(f"prev hash must be {want} bytes at seq {seq}")
    if type(hlc) is not int or not 0 <= hlc <= MAX_HLC - nops:
        raise DecodeError(f"hlc out of range: {hlc!r}")
    if not 1 <= nops <= MAX_OPS_PER_CHANGE:
        raise DecodeError(f"a change holds 1..{MAX_OPS_PER_CHANGE} ops, got {nops}")


_SCALARS = (type(None), bool, int, float, str, bytes)


def check_value(value: Any, depth: int = 0) -> None:
    """Raise :class:`DecodeError` if a received value is not a plain record value."""
    t = type(value)
    if t is str or t is bytes or t is float or t is bool or value is None:
        return  # the common case first: most fields are text
    if t is int:
        if not -(2**63) <= value < 2**64:
            raise DecodeError(f"integer out of range: {value}")
        return
    if depth >= 16:
        raise DecodeError("value nested too deeply")
    if t is list:
        for v in value:
            check_value(v, depth + 1)
    elif t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise DecodeError("map keys must be text")
            check_value(v, depth + 1)
        # Canonical maps have keys in UTF-8 byte order, which for text is code point
        # order: re-encoding keeps map order, so only this check refuses other orders.
        keys = list(value)
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise DecodeError("map keys are not in canonical (sorted) order")
    else:
        raise DecodeError(f"unsupported value type {t.__name__}")


_PLAIN = frozenset({str, bytes, float, bool, type(None), int})
"""Value types needing no further check in decoded data: msgpack has no integer
outside [-2**63, 2**64) (spec: int 64 / uint 64), so a decoded int is in range."""
_GOOD_NAMES: set[tuple[str, ...]] = set()
"""Field-name tuples already found valid (voter lists repeat a handful of layouts)."""
_GOOD_NAMES_MAX = 4096


def _check_names(names: tuple[Any, ...]) -> None:
    if not set(map(type, names)) <= {str}:
        raise DecodeError("field names must be text")
    if list(names) != sorted(names):
        raise DecodeError("map keys are not in canonical (sorted) order")
    if "" in names or max(map(len, names), default=0) > MAX_NAME_CHARS:
        raise DecodeError("invalid field name in op")


def check_fields(fields: dict[Any, Any]) -> None:
    """:func:`check_value` for a put's top-level fields, inlined for speed (a baseline
    import checks millions of them); also checks the field names.

    A tuple of names found valid once is remembered (at most 4,096 tuples), so a
    voter list's repeated layout is checked once. Only tuples of ``str`` are ever
    remembered, and a tuple equal to one of them holds the same text, so the cache
    cannot admit a name the full check would refuse.
    """
    names = tuple(fields)
    if names not in _GOOD_NAMES:
        _check_names(names)
        if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
            _GOOD_NAMES.add(names)
    if not set(map(type, fields.values())) <= _PLAIN:
        for value in fields.values():
            check_value(value, 1)


def decode_op(raw: Any, resolve_pred: Any) -> Op:
    """Build an op from its array form; ``resolve_pred`` maps the raw pred list to OpIds.

    Raises :class:`DecodeError` naming what is malformed.
    """
    if type(raw) is not list or len(raw) < 4:
        raise DecodeError("op must be an array")
    kind, coll, key = raw[0], raw[1], raw[2]
    if type(coll) is not str or not coll or len(coll) > MAX_NAME_CHARS:
        raise DecodeError("invalid collection in op")
    if type(key) is not str or not key or len(key) > MAX_NAME_CHARS:
        raise DecodeError("invalid key in op")
    if kind == PUT and len(raw) == 5 and type(kind) is int:
        fields = raw[3]
        if type(fields) is not dict:
            raise DecodeError("put fields must be a map")
        check_fields(fields)
        return Put(coll, key, fields, resolve_pred(raw[4]))
    if kind == DELETE and len(raw) == 4 and type(kind) is int:
        return Delete(coll, key, resolve_pred(raw[3]))
    raise DecodeError(f"unknown op kind {kind!r}")


def decode_ops(ops_raw: Any, resolve_pred: Any) -> tuple[tuple[Op, ...], list[Any]]:
    """Decode a change's op arrays; also return them in canonical body form.

    ``ops_raw`` is the decoded msgpack array of op arrays (it is reused: each op's
    pred is replaced in place by its canonical ``[[hlc, author], ...]`` list), so the
    body can be re-encoded from it in one call without rebuilding every op.
    Raises :class:`DecodeError` for anything malformed.
    """
    if type(ops_raw) is not list:
        raise DecodeError("ops must be an array")
    ops: list[Op] = []
    for raw in ops_raw:
        op = decode_op(raw, resolve_pred)
        if op.pred or raw[-1]:
            raw[-1] = [[h, a] for h, a in sorted(set(op.pred))]
        ops.append(op)
    return tuple(ops), ops_raw


def _plain_pred(raw: Any) -> tuple[OpId, ...]:
    if type(raw) is not list:
        raise DecodeError("pred must be an array")
    out: list[OpId] = []
    for item in raw:
        if (type(item) is not list or len(item) != 2 or type(item[0]) is not int
                or not isinstance(item[1], bytes) or len(item[1]) != PUBLIC_KEY_BYTES
                or not 0 <= item[0] <= MAX_HLC):
            raise DecodeError("pred entries must be [hlc, author]")
        out.append((item[0], item[1]))
    return tuple(out)


def decode_body(body: bytes, sig: bytes) -> Change:
    """Decode a stored or received canonical body back to a :class:`Change`.

    Raises :class:`DecodeError` if ``body`` is not exactly a canonical change body.
    """
    raw = codec.unpack(body, max_bytes=MAX_CHANGE_BYTES)
    if type(raw) is not list or len(raw) != 7 or raw[0] != FORMAT_VERSION:
        raise DecodeError("not a meshsync change body (version 1)")
    ops, arrays = decode_ops(raw[6], _plain_pred)
    change = make_change(raw[1], raw[2], raw[3], raw[4], raw[5], ops, sig, arrays)
    if change.body != body:
        raise DecodeError("change body is not in canonical form")
    return change


def decode_stored(body: bytes, sig: bytes, digest: bytes) -> Change:
    """Rebuild a change from a body this device verified when it stored it.

    The light inverse of :attr:`Change.body` for sending what a store holds: no
    canonical re-encoding, no value checks (the receiver does all of them again).
    ``digest`` is the stored SHA-256 of ``body``. Use :func:`decode_body` for bytes
    that did not come from this device's own store. Raises :class:`DecodeError`
    if ``body`` is not a change body at all.
    """
    raw = codec.unpack(body, max_bytes=MAX_CHANGE_BYTES)
    try:
        _, author, partition, seq, prev, hlc, ops_raw = raw
        ops = tuple(
            Put(o[1], o[2], o[3], tuple((h, a) for h, a in o[4])) if o[0] == PUT
            else Delete(o[1], o[2], tuple((h, a) for h, a in o[3]))
            for o in ops_raw)
    except (ValueError, TypeError, IndexError) as exc:
        raise DecodeError(f"stored change body is malformed: {exc}") from exc
    return Change(author, partition, seq, prev, hlc, ops, body, sig, digest)
