"""How meshsync values are written as PostgreSQL text and jsonb.

**Text escape.** PostgreSQL ``text`` and ``jsonb`` cannot hold U+0000, which record
keys, collection and field names, values and refusal reasons may contain (the
store contract keeps names byte-exact). Every text column therefore holds
:func:`escape` of the value: U+0001 becomes U+0001 U+0002 and U+0000 becomes
U+0001 U+0001; every other character is unchanged. The mapping is reversible and
keeps code-point order, so ``ORDER BY`` under ``COLLATE "C"`` sorts escaped text as
the originals sort. Names without those two control characters (all real ones) are
stored as they are, so ``WHERE key = 'v-0001'`` works.

**jsonb projection of a record** (:func:`fields_json`): the visible fields of the
record state (as ``RecordState.visible()``; an empty object when deleted) as a JSON
object with these conversions:

* ``bytes`` -> a base64 string (RFC 4648 standard alphabet, padded):
  ``decode(fields->>'photo', 'base64')`` gives the bytes back in SQL;
* non-finite floats -> the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
* text (values and map keys) -> :func:`escape`;
* integers of any size stay JSON numbers (jsonb numbers are ``numeric``).

The projection is for reading in SQL only: the ``state`` column is the record.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from typing import Any

from msgpack import unpackb as _unpackb

from meshsync.model import codec

_ESCAPED = re.compile("\x01([\x01\x02])")


def escape(text: str) -> str:
    """``text`` as stored in a PostgreSQL text column (see module docs)."""
    if "\x00" in text or "\x01" in text:
        return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")
    return text


def unescape(text: str) -> str:
    """Inverse of :func:`escape`."""
    if "\x01" in text:
        return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "\x01" else "\x01", text)
    return text


def unescape_opt(text: str | None) -> str | None:
    """:func:`unescape`, passing None through."""
    return None if text is None else unescape(text)


def _b64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not a record value: {type(value).__name__}")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {escape(k): _clean(v) for k, v in value.items()}
    return value


def _make_dumps() -> Callable[[Any], str]:
    """``json.dumps`` with this module's settings, without building an encoder per call
    (that set-up was half the cost of a record's fields). Uses the C encoder the
    standard library itself uses when it is there, else ``JSONEncoder.encode``."""
    settings = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                                default=_b64)
    make = getattr(json.encoder, "c_make_encoder", None)
    sample = {"a": [1, -2.5, True, None, "\u00e9\n"]}
    try:  # the arguments JSONEncoder.iterencode passes (markers off: no cycles here)
        encode = make(None, _b64, json.encoder.encode_basestring, None, ":", ",",
                      False, False, False) if make is not None else None
        usable = encode is not None and "".join(encode(sample, 0)) == settings.encode(sample)
    except Exception:  # pragma: no cover - another Python's private encoder
        usable = False
    if usable:
        return lambda value: "".join(encode(value, 0))  # type: ignore[misc]
    return settings.encode  # pragma: no cover - Pythons without the C encoder


_dumps = _make_dumps()


def _visible(raw: Any) -> dict[str, Any]:
    if len(raw) == 3:  # compact single put: the fields, as they are
        return raw[2]  # type: ignore[no-any-return]
    authors, entries, _tombs, _superseded = raw
    out = {}
    for name, items in entries.items():
        best = items[0] if len(items) == 1 else max(items, key=lambda e: (e[0], authors[e[1]]))
        out[name] = best[2]
    return out


def visible_fields(state: bytes) -> dict[str, Any]:
    """``RecordState.decode(state).visible()`` of a live record, read straight from the
    canonical encoding ``[authors, {field: [[hlc, author index, value], ...]}, ...]``
    (see :meth:`RecordState.encode`) without building the superseded sets: the winner
    of a field is its entry with the greatest ``(hlc, author)``. The compact form of a
    single put, ``[author, hlc, {field: value}]``, holds exactly the visible fields.
    Raises :class:`~meshsync.model.errors.DecodeError` (or another error) if ``state`` is not
    such an encoding."""
    return dict(_visible(codec.unpack(state, max_bytes=1 << 30)))


def fields_json(state: bytes, deleted: bool) -> str | None:
    """The jsonb text of a record's visible fields (``{}`` when ``deleted``), or None if
    ``state`` is not a record state encoding (only tests store such bytes)."""
    if deleted:
        return "{}"
    try:  # (msgpack straight: a malformed state fails here as in codec.unpack)
        raw = _unpackb(state, raw=False, strict_map_key=True, use_list=True)
        visible = raw[2] if len(raw) == 3 else _visible(raw)
    except Exception:  # the projection is best effort; `state` stays authoritative
        return None
    try:
        text = _dumps(visible)
    except ValueError:  # a NaN or infinity
        return _dumps(_clean(visible))
    # json escapes control characters as \u00XX; only these two need the text escape.
    if "\\u000" in text and ("\\u0000" in text or "\\u0001" in text):
        return _dumps(_clean(visible))
    return text


def fields_jsonb(state: bytes, deleted: bool) -> bytes | None:
    """:func:`fields_json` in PostgreSQL's binary ``jsonb`` form (the version byte 1,
    then the UTF-8 text), as binary ``COPY`` sends it; None as there."""
    text = fields_json(state, deleted)
    return None if text is None else b"\x01" + text.encode()
