"""Read-side views of records: what get, ls and conflicts return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshsync.model.change import OpId
from meshsync.model.hlc import wall_ms
from meshsync.model.identity import device_id
from meshsync.replica.crdt import ALL, RecordState
from meshsync.store.base import RecordRow


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


__all__ = ["ALL", "Record", "Version"]
