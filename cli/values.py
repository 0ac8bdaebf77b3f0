"""Parsing ``field=value`` arguments.

* ``name=text`` stores the text as a string, exactly as typed;
* ``name:=JSON`` stores a JSON value: ``age:=42``, ``ok:=true``, ``note:=null``,
  ``score:=4.5``, ``tags:='["a","b"]'`` (the convention of HTTPie).
"""

from __future__ import annotations

import json
import math
from typing import Any

from meshsync.errors import UsageError


def _not_json(name: str) -> Any:
    # Python's json accepts NaN and Infinity; RFC 8259 does not, and `get --json`
    # would then print them for other programs to choke on.
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a float")
    return value


def _show(text: str, limit: int = 60) -> str:
    """The argument as quoted in an error: cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one argument; raises UsageError naming it if malformed."""
    eq = text.find("=")
    if eq > 0 and text[eq - 1] == ":":
        name, raw = text[: eq - 1], text[eq + 1 :]
        try:
            value = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{_show(text)}: value after ':=' is not JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"{_show(text)}: value after ':=' is not JSON ({exc})") from exc
    elif eq >= 0:
        name, value = text[:eq], text[eq + 1 :]
    else:
        raise UsageError(f"{_show(text)}: expected field=value or field:=json")
    if not name:
        raise UsageError(f"{_show(text)}: missing field name before '='")
    return name, value


def parse_assignments(items: tuple[str, ...]) -> dict[str, Any]:
    """Parse all arguments into a fields dict; a repeated field is an error."""
    fields: dict[str, Any] = {}
    for item in items:
        name, value = parse_assignment(item)
        if name in fields:
            raise UsageError(f"field {name!r} given twice")
        fields[name] = value
    if not fields:
        raise UsageError("give at least one field=value")
    return fields
