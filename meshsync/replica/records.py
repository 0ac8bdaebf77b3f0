"""Read-side views of records: what get, ls and conflicts return, and
:class:`RecordReader`, the reads themselves (a :class:`~meshsync.replica.node.Node`'s,
or a store's opened read-only by :mod:`meshsync.host.reading`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshsync.model.change import OpId
from meshsync.model.errors import UsageError
from meshsync.model.hlc import wall_ms
from meshsync.model.identity import device_id
from meshsync.model.text import Msg
from meshsync.replica.crdt import ALL, RecordState
from meshsync.store.base import RecordRow

if TYPE_CHECKING:
    from meshsync.store.base import Store


@dataclass(frozen=True)
class Version:
    """One value of a field: who wrote it and when (HLC)."""

    value: Any
    author: str
    hlc: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``wall_ms`` is the HLC's wall-clock part)."""
        return {"value": self.value, "author": self.author, "hlc": self.hlc,
                "wall_ms": wall_ms(self.hlc)}


def _version(op: OpId, value: Any) -> Version:
    return Version(value, device_id(op[1]), op[0])


@dataclass(frozen=True)
class Record:
    """A record as visible on this device.

    ``fields`` holds each field's winning value; ``conflicts`` maps a field to all its
    concurrent versions, winner first (key ``*`` = a delete concurrent with edits).
    """

    partition: str
    collection: str
    key: str
    fields: dict[str, Any]
    deleted: bool
    conflicts: dict[str, list[Version]]

    @classmethod
    def from_row(cls, row: RecordRow) -> Record:
        """Build the view from a stored row."""
        state = RecordState.decode(row.state)
        conflicts = {
            name: [_version(op, value) for op, value in versions]
            for name, versions in state.conflicts().items()
        }
        return cls(row.partition, row.collection, row.key, state.visible(),
                   state.deleted, conflicts)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; identical on every device holding the same ops."""
        return {
            "partition": self.partition, "collection": self.collection, "key": self.key,
            "fields": self.fields, "deleted": self.deleted,
            "conflicts": {k: [v.to_json() for v in vs] for k, vs in self.conflicts.items()},
        }


def several_partitions(collection: str, key: str, rows: Sequence[RecordRow]) -> UsageError:
    """The refusal of an action on ``collection/key`` that names no partition while the
    key exists in the partitions of ``rows`` (more than one)."""
    names = ", ".join(r.partition for r in rows)
    return UsageError(Msg("%(collection)s/%(key)s exists in several partitions "
                          "(%(names)s); name one with --partition",
                          collection=collection, key=key, names=names))


class RecordReader:
    """The records held in ``store`` (a :class:`~meshsync.store.base.Store`), read only."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, collection: str, key: str, partition: str | None = None) -> Record | None:
        """The record, or None if this device holds no op of it.

        Raises :class:`~meshsync.model.errors.UsageError` if ``partition`` is None and
        the key exists in several partitions.
        """
        if partition is None:
            rows = self.store.find_record(collection, key)
            if len(rows) > 1:
                raise several_partitions(collection, key, rows)
            row = rows[0] if rows else None
        else:
            row = self.store.load_record(partition, collection, key)
        return Record.from_row(row) if row else None

    def records(self, collection: str, partition_prefix: str = "", *,
                include_deleted: bool = False) -> Iterator[Record]:
        """Records of ``collection`` under ``partition_prefix`` (whole path segments)."""
        for row in self.store.iter_records(collection, partition_prefix):
            if include_deleted or not row.deleted:
                yield Record.from_row(row)

    def conflicts(self, collection: str | None = None) -> list[Record]:
        """Records with at least one open conflict (of ``collection``, or of all)."""
        rows = self.store.iter_records(collection, conflicts_only=True)
        return [Record.from_row(r) for r in rows]


__all__ = ["ALL", "Record", "RecordReader", "Version", "several_partitions"]
