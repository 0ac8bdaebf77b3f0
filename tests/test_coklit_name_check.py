"""The name check's fast path (plain ASCII names, printable text) gives the verdict the
character-by-character rule gives, for any text (examples/coklit/schema.py)."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st
from meshsync.coklit.codes import APOSTROPHES
from meshsync.coklit.schema import MAX_NAME_CHARS, check_nama

ALLOWED_PUNCT = set(" .,-" + APOSTROPHES)


def rule(value: str) -> bool:
    """The rule as the schema's docstring states it, character by character:
    non-empty text, at most MAX_NAME_CHARS, no control character, and only letters,
    marks, spaces, apostrophes, dots, commas and hyphens."""
    if not value.strip() or len(value) > MAX_NAME_CHARS:
        return False
    if any(unicodedata.category(c).startswith("C") for c in value):
        return False
    return all(c in ALLOWED_PUNCT or unicodedata.category(c)[0] in "LM" for c in value)


NAME_ALPHABET = st.sampled_from(sorted(ALLOWED_PUNCT) + list("AbyZ09_\t\u00a0\u2028\u200b")
                                + ["e\u0301", "é", "ß", "Ŋ", "ä", "\x00", "\x7f", "\ufeff"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(NAME_ALPHABET, max_size=20).map("".join)))
@example("Ma'ruf Uji")
@example("Yosina Contoh\u200b")
@example("Yosina\tContoh")
@example("")
@example(" ")
def test_fast_path_agrees_with_the_rule(value: str) -> None:
    assert (check_nama(value) is None) == rule(value), (value, check_nama(value))
