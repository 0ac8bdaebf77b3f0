"""Resuming an interrupted ``coklit import`` of the same file.

An import writes the file's good rows in a fixed order (TPS by TPS, in file order),
one signed change per batch, each committed by itself. With each batch it stores, in
the batch's own transaction (:meth:`meshsync.replica.node.Node.write` ``meta``), a
marker: the SHA-256 of the file, a SHA-256 of the order of its good rows
(``partition/key``, one a line) and how many of them are stored. Run again on the
same file, with the same rows judged good, the import skips that many rows (they are
exactly the ones stored) and says so; the marker is cleared when an import
completes. A marker that does not match (another file, or other rows judged good
since, e.g. under a newer schema) is ignored: the import then merges every row
(:mod:`meshsync.coklit.merge`), which stores the same result, only more slowly.
A marker never counts a row that is not stored: it is written with the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshsync.replica.node import Node

META = "coklit.import"
"""The store meta name of the marker."""


@dataclass(frozen=True)
class Marker:
    """Which import (``file``: SHA-256 of its bytes; ``rows``: of its good rows'
    order, both hex) and how many of its good rows are stored (``done``)."""

    file: str
    rows: str
    done: int = 0

    def at(self, done: int) -> dict[str, bytes]:
        """The ``meta`` to store with a batch after which ``done`` rows are stored."""
        body = {"file": self.file, "rows": self.rows, "done": done}
        return {META: json.dumps(body, sort_keys=True).encode()}


def marker_of(data: bytes, ordered: Iterable[tuple[str, str]]) -> Marker:
    """The marker of an import of file bytes ``data`` whose good rows are
    ``(partition, key)`` in the order written."""
    rows = hashlib.sha256()
    for partition, key in ordered:
        rows.update(f"{partition}/{key}\n".encode())
    return Marker(hashlib.sha256(data).hexdigest(), rows.hexdigest())


def stored_rows(node: Node, marker: Marker, total: int) -> int:
    """How many of this import's rows an interrupted run of it stored (0: none, or
    the held marker is another import's)."""
    raw = node.store.get_meta(META)
    if not raw:
        return 0
    try:
        held = json.loads(raw)
        done = held["done"]
        same = (held["file"], held["rows"]) == (marker.file, marker.rows)
    except (ValueError, KeyError, TypeError):
        return 0
    return done if same and isinstance(done, int) and 0 < done <= total else 0


def finish(node: Node) -> None:
    """Clear the marker: the import completed."""
    if node.store.get_meta(META):
        with node.store.transaction():
            node.store.set_meta(META, b"")
