"""Parsing ``field=value`` arguments.

* ``name=text`` stores the text as a string, exactly as typed;
* ``name:=JSON`` stores a JSON value: ``age:=42``, ``ok:=true``, ``note:=null``,
  ``score:=4.5``, ``tags:='["a","b"]'`` (the convention of HTTPie).
"""

from __future__ import annotations

import json
from typing import Any

from meshsync.errors import UsageError


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one argument; raises UsageError naming it if malformed."""
    eq = text.find("=")
    if eq > 0 and text[eq - 1] == ":":
        name, raw = text[: eq - 1], text[eq + 1 :]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{text!r}: value after ':=' is not JSON ({exc.msg})") from exc
    elif eq >= 0:
        name, value = text[:eq], text[eq + 1 :]
    else:
        raise UsageError(f"{text!r}: expected field=value or field:=json")
    if not name:
        raise UsageError(f"{text!r}: missing field name before '='")
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
