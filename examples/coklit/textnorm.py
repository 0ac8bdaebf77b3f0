"""The one spelling the coklit schema stores for typed text (names, places, addresses).

A name typed on one phone in NFD (``e`` + combining acute) and on another in NFC
(``é``), or with a doubled space, is one name; stored as typed, ``ls`` and central's SQL
showed two spellings. So this device's own edits of the :data:`NORMALISED_FIELDS` are
stored in Unicode NFC with every run of spaces collapsed to one space and the ends
trimmed (:func:`tidy`), before they are signed (a newline or tab stays, and the
validator refuses it as a control character):

* local puts (CLI ``put``, the daemon's API, the library's ``node.put``): through the
  node's normaliser hook (:attr:`meshsync.replica.node.Node.normalisers`), which
  :func:`meshsync.coklit.schema.register` sets for ``voters``;
* ``coklit import``: the cells of those columns are tidied as they are read, so the
  baseline (``dpt``) and the three-way merge see the stored spelling.

A received change is never rewritten: it is judged on its own content, as its author
signed it. Apostrophes are kept as typed (docs/failure-cases.md B19: search folds
them, :mod:`meshsync.coklit.names`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Text fields of a voter stored in the one spelling :func:`tidy` gives.
NORMALISED_FIELDS = ("nama", "tempat_lahir", "alamat")


#: Runs of spaces (Unicode category Zs: the ASCII space, no-break space, ideographic
#: space...). Control characters (a newline, a tab) are left for the validator to refuse.
_SPACES = re.compile(r"[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")


def tidy(text: str) -> str:
    """``text`` in NFC, each run of spaces (any Unicode space, :data:`_SPACES`) as one
    ASCII space, trimmed."""
    if text.isascii() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # ASCII is its own NFC, and its only space is the ASCII one
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip(" ")


def normalise_voter(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with each text value of :data:`NORMALISED_FIELDS` tidied (a copy)."""
    tidied = {name: tidy(value) for name in NORMALISED_FIELDS
              if isinstance(value := fields.get(name), str)}
    return {**fields, **tidied}
