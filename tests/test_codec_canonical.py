"""``codec.canonical_value``'s fast path (exact dicts, plain scalars, keys sorted as
text) gives what the general rule gives: every map's keys in UTF-8 byte order, tuples
as lists, the same refusals (meshsync/model/codec.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsync.model.codec import canonical_value, pack
from meshsync.model.errors import UsageError


def reference(value: Any, depth: int = 0) -> Any:
    """The rule, written plainly: keys sorted by their UTF-8 bytes at every level."""
    if value is None or isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value <= 2**64 - 1:
            raise UsageError("integer out of range")
        return value
    if isinstance(value, list | tuple | dict) and depth >= 16:
        raise UsageError("too deep")
    if isinstance(value, list | tuple):
        return [reference(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UsageError("map keys must be text")
        return {k: reference(value[k], depth + 1)
                for k in sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass"))}
    raise UsageError("unsupported")


KEYS = st.text(st.characters(codec=None), max_size=4)  # surrogates and astral included
SCALARS = st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | \
    st.text(max_size=5) | st.binary(max_size=3)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.tuples(inner, inner) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=30)


def outcome(function: Any, value: Any) -> Any:
    try:
        result = function(value)
    except UsageError:
        return "refused"
    return [list(map(repr, _keys(result))), repr(result)]


def _keys(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [list(value), *(_keys(v) for v in value.values())]
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_fast_path_agrees_with_the_rule(fields: dict[str, Any]) -> None:
    assert outcome(canonical_value, fields) == outcome(reference, fields)


def test_a_record_keeps_its_values_and_sorts_its_keys() -> None:
    fields = {"nama": "Yosina", "dpt": {"tps": 3, "nama": "Yosina"}, "disabilitas": ("fisik",),
              "\U0001f600": 1, "\uffff": 2}
    clean = canonical_value(fields)
    assert list(clean) == ["disabilitas", "dpt", "nama", "\uffff", "\U0001f600"]
    assert clean["dpt"] == {"nama": "Yosina", "tps": 3} and clean["disabilitas"] == ["fisik"]
    assert pack(clean) == pack(reference(fields))
    with pytest.raises(UsageError):
        canonical_value({"x": 2**64})
    with pytest.raises(UsageError):
        canonical_value({1: "x"})
