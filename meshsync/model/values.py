"""Record values as JSON, both ways: ``field=value`` arguments, API bodies, ``--json``.

* ``name=text`` stores the text as a string, exactly as typed;
* ``name:=JSON`` stores a JSON value: ``age:=42``, ``ok:=true``, ``note:=null``,
  ``score:=4.5``, ``tags:='["a","b"]'`` (the convention of HTTPie).

JSON input is RFC 8259 (no ``NaN``/``Infinity``, no float that overflows to infinity)
with **no duplicate keys**: ``{"a": 1, "a": 2}`` is refused naming ``a`` instead of
silently keeping the last. Record values JSON cannot carry use one-key tag objects,
written by ``--json`` and the local API and read back by ``:=`` and the API:

* bytes: ``{"$bytes": "<base64, RFC 4648 with padding>"}``;
* a non-finite float (written by the library or a peer; output only, refused as input):
  ``{"$float": "NaN"}``, ``{"$float": "Infinity"}``, ``{"$float": "-Infinity"}``;
* a stored map that itself has exactly one key named like a tag (``$bytes``,
  ``$float`` or ``$map``): ``{"$map": {...}}``, so it never reads as a tag.

Every other value is plain JSON. Errors are :class:`JsonInputError` (a
:class:`~meshsync.model.errors.UsageError`) naming where the bad value is, e.g.
``fields.alamat: duplicate key 'rt'`` (the object that holds the key twice).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from meshsync.model.errors import UsageError
from meshsync.model.text import Msg

TAGS = frozenset({"$bytes", "$float", "$map"})
#: Most nested lists and maps in one field value that every peer accepts (a field
#: value is level 1; ``meshsync.model.change.check_value`` refuses a container at level 16).
MAX_VALUE_DEPTH = 15
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class JsonInputError(UsageError):
    """JSON input refused: ``where`` is the path of the bad value (``fields.x[2]``,
    empty for the whole document) and ``reason`` says what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


def _short(key: str, limit: int = 40) -> str:
    """``key`` cut to ``limit`` characters for a message (keys may be megabytes)."""
    return key if len(key) <= limit else key[:limit] + "…"


def child_path(where: str, key: str | int) -> str:
    """The path of member ``key`` (a map key or a list index) of the value at ``where``,
    for messages: ``fields.alamat.rt``, ``tags[2]``, ``x["nama lengkap"]`` (a key
    longer than 40 characters is cut)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if _PLAIN_KEY.match(key) and len(key) <= 40:
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(_short(key))}]"


# -- parsing ------------------------------------------------------------------------------


class JsonSyntaxError(JsonInputError):
    """The text is not JSON at all (or nests deeper than the parser goes): ``where`` is
    empty and ``reason`` starts with ``not JSON``."""

    def __init__(self, reason: str) -> None:
        super().__init__("", reason)


class _Bad:
    """Left in the parsed tree where a value was refused; found with its path later."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Duplicated(dict[str, Any]):
    """A JSON object that repeated ``key`` (the last value kept, as json would)."""

    key = ""


def loads_strict(raw: bytes | str) -> Any:
    """Parse RFC 8259 JSON refusing duplicate keys, ``NaN``/``Infinity`` and floats
    beyond ±1.8e308.

    Raises :class:`JsonInputError`: ``where`` names the bad member for duplicates and
    non-numbers, and is empty for syntax errors, bad UTF-8 and nesting too deep for
    the parser (about 1,000 levels).
    """
    flagged: list[bool] = []

    def constant(name: str) -> Any:
        flagged.append(True)
        return _Bad(f"{name} is not a JSON number")

    def number(text: str) -> Any:
        value = float(text)
        if math.isfinite(value):
            return value
        flagged.append(True)
        return _Bad(f"{text} is too large for a float")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(items)
        if len(made) == len(items):
            return made
        duplicated = _Duplicated(made)
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                duplicated.key = key
                break
            seen.add(key)
        flagged.append(True)
        return duplicated

    try:
        tree = json.loads(raw, parse_constant=constant, parse_float=number,
                          object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"not JSON ({exc.msg} at line {exc.lineno} column "
                              f"{exc.colno})") from exc
    except ValueError as exc:  # bad UTF-8, an integer of more than 4,300 digits
        raise JsonSyntaxError(f"not JSON ({exc})") from exc
    except RecursionError as exc:
        raise JsonSyntaxError("not JSON this accepts (nested too deeply)") from exc
    if flagged:
        _raise_first_flag(tree)
    return tree


def _raise_first_flag(tree: Any) -> None:
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _Bad):
            raise JsonInputError(where, value.reason)
        if isinstance(value, _Duplicated):
            raise JsonInputError(where, f"duplicate key {_short(value.key)!r}")
        if isinstance(value, dict):
            stack += [(child_path(where, k), v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(child_path(where, i), v) for i, v in reversed(list(enumerate(value)))]


# -- JSON form -> record value --------------------------------------------------------------


def _text(value: str, where: str, what: str = "") -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonInputError(where, f"{what + ' is ' if what else ''}not valid Unicode "
                                        f"text (a lone surrogate at index {exc.start})") \
                from None


def value_from_json(value: Any, where: str, depth: int = 1) -> Any:
    """The record value a parsed JSON value stands for: tags decoded, everything else
    as is. ``depth`` is this value's nesting level (1 for a field's value).

    Raises :class:`JsonInputError` at ``where`` for an integer outside
    [-2**63, 2**64-1], text that is not valid Unicode, nesting deeper than
    :data:`MAX_VALUE_DEPTH`, a malformed tag, or a ``$float`` tag (non-finite floats
    are never accepted as input).
    """
    t = type(value)
    if t is str:
        _text(value, where)
        return value
    if value is None or t is bool or t is float:
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise JsonInputError(where, "integer out of range (-2**63 to 2**64-1)")
        return value
    if depth > MAX_VALUE_DEPTH:
        raise JsonInputError(where, f"nested too deeply (at most {MAX_VALUE_DEPTH} levels "
                                    "of lists and maps)")
    if t is list:
        return [value_from_json(v, child_path(where, i), depth + 1)
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        raise JsonInputError(where, f"unsupported value type {t.__name__}")
    for key in value:
        _text(key, where, f"key {_short(key)!r}")
    if len(value) == 1 and next(iter(value)) in TAGS:
        return _from_tag(value, where, depth)
    return {k: value_from_json(v, child_path(where, k), depth + 1) for k, v in value.items()}


def _from_tag(value: dict[str, Any], where: str, depth: int) -> Any:
    [(tag, inner)] = value.items()
    if tag == "$bytes":
        if not isinstance(inner, str):
            raise JsonInputError(where, "$bytes needs base64 text")
        try:
            return base64.b64decode(inner.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise JsonInputError(where, "$bytes is not base64 (RFC 4648 with padding)") \
                from None
    if tag == "$float":
        raise JsonInputError(where, "$float: only finite numbers are accepted as input")
    if not isinstance(inner, dict):
        raise JsonInputError(where, "$map needs a JSON object")
    return {k: value_from_json(v, child_path(where, k), depth + 1) for k, v in inner.items()}


def fields_from_json(fields: dict[str, Any], where: str = "") -> dict[str, Any]:
    """:func:`value_from_json` for every value of a fields map (field names must be
    valid text; the names themselves are checked by the node)."""
    for name in fields:
        _text(name, where, f"field name {_short(name)!r}")
    return {name: value_from_json(v, child_path(where, name)) for name, v in fields.items()}


# -- record value -> JSON form --------------------------------------------------------------


def value_to_json(value: Any) -> Any:
    """The JSON form of a record value (see the module docstring); never raises for a
    value a record can hold."""
    t = type(value)
    if t is str or t is int or value is None or t is bool:  # most values: as they are
        return value
    if t is float and not math.isfinite(value):
        return {"$float": "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if t is list:
        return [value_to_json(v) for v in value]
    if t is dict:
        made = {k: value_to_json(v) for k, v in value.items()}
        return {"$map": made} if len(value) == 1 and next(iter(value)) in TAGS else made
    return value


def record_to_json(record: dict[str, Any]) -> dict[str, Any]:
    """A ``Record.to_json()`` dict with its field values and conflict versions' values
    in JSON form (:func:`value_to_json`)."""
    return {
        **record,
        "fields": {k: value_to_json(v) for k, v in record["fields"].items()},
        "conflicts": {k: [{**v, "value": value_to_json(v["value"])} for v in versions]
                      for k, versions in record["conflicts"].items()},
    }


# -- field=value arguments ------------------------------------------------------------------


def _under(name: str, where: str) -> str:
    """``where``, a path from a value's root, as a path from the field ``name``."""
    return f"{name}{where}" if where.startswith("[") or not where else f"{name}.{where}"


def _refused(text: str, where: str, reason: str) -> UsageError:
    return UsageError(f"{_show(text)}: value after ':=' is not JSON this accepts "
                      f"({where + ': ' if where else ''}{reason})")


def _show(text: str, limit: int = 60) -> str:
    """The argument as quoted in an error: cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one argument; raises UsageError naming it if malformed."""
    eq = text.find("=")
    if eq > 0 and text[eq - 1] == ":":
        name, raw = text[: eq - 1], text[eq + 1 :]
        try:
            parsed = loads_strict(raw)
        except JsonSyntaxError as exc:
            raise UsageError(f"{_show(text)}: value after ':=' is {exc.reason}") from exc
        except JsonInputError as exc:
            raise _refused(text, _under(name, exc.where), exc.reason) from exc
        try:
            value = value_from_json(parsed, name)
        except JsonInputError as exc:
            raise _refused(text, exc.where, exc.reason) from exc
    elif eq >= 0:
        name, value = text[:eq], text[eq + 1 :]
    else:
        raise UsageError(Msg("%(arg)s: expected field=value or field:=json", arg=_show(text)))
    if not name:
        raise UsageError(Msg("%(arg)s: missing field name before '='", arg=_show(text)))
    return name, value


def parse_assignments(items: tuple[str, ...]) -> dict[str, Any]:
    """Parse all arguments into a fields dict; a repeated field is an error."""
    fields: dict[str, Any] = {}
    for item in items:
        name, value = parse_assignment(item)
        if name in fields:
            raise UsageError(Msg("field %(name)r given twice", name=name))
        fields[name] = value
    if not fields:
        raise UsageError(Msg("give at least one field=value"))
    return fields
