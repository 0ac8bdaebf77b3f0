"""What the local API does to the running node: typed calls, each run in a worker
thread under the node's limiter (see :class:`meshsync.daemon.api.NodeService`).

The daemon holds its home (one home, one writer: docs/architecture.md §9), so the
CLI's writes arrive here too: records, bundles, voter lists, enrolment and key
rotation. After each write the counts the status shows are refreshed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import trio
from meshsync.daemon.api import NodeService
from meshsync.daemon.events import EventBus

from meshsync.host.enrol import Enrolment, enrol, start_rekey
from meshsync.host.home import Home
from meshsync.host.local import adopt_schema, schema_import, use_schema
from meshsync.model.change import FeedId
from meshsync.model.errors import MeshsyncError
from meshsync.model.identity import device_id
from meshsync.replica.node import Node
from meshsync.store.base import RecordPos, record_pos

JsonObject = dict[str, object]
#: The ``schema`` of a home holding a voter list (installed through
#: :data:`meshsync.host.local.SCHEMA_GROUP`).
COKLIT_SCHEMA = "coklit"


@dataclass
class Counts:
    """What the status shows of the store, recounted after each write and session.

    ``changes``: changes held; ``conflicts``: records with open conflicts;
    ``per_partition``: live records per partition; ``digest``: 16 hex digits of the
    version vector (advertised); ``vv``: the version vector itself.
    """

    changes: int = 0
    conflicts: int = 0
    per_partition: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    vv: dict[FeedId, int] = field(default_factory=dict)


def count_store(node: Node) -> Counts:
    """Recount :class:`Counts` from ``node``'s store (reads every record: call from a
    worker thread)."""
    store = node.store
    feeds = store.feeds()
    per_partition = Counter(r.partition for r in store.iter_records() if not r.deleted)
    digest = hashlib.sha256(repr([(f.author, f.partition, f.head_seq)
                                  for f in feeds]).encode()).hexdigest()[:16]
    return Counts(changes=sum(f.head_seq for f in feeds),
                  conflicts=sum(1 for _ in store.iter_records(conflicts_only=True)),
                  per_partition=dict(per_partition), digest=digest,
                  vv={f.feed: f.head_seq for f in feeds})


class LocalNode(NodeService):
    """The node calls of :class:`NodeService` on ``node`` in ``home``.

    Subclasses (the daemon) override :meth:`switch_key` to follow a key rotation.
    """

    def __init__(self, home: Home, node: Node, limiter: trio.CapacityLimiter) -> None:
        self.home, self.node, self.limiter = home, node, limiter
        self.events = EventBus()
        self.counts = Counts()
        self.custody: JsonObject = {"feeds": [], "receipts": []}

    # -- reading ----------------------------------------------------------------------

    def list_records(self, collection: str, prefix: str) -> list[JsonObject]:
        """See :meth:`NodeService.list_records`."""
        return [r.to_json() for r in self.node.records(collection, prefix)]

    def records_page(self, collection: str, prefix: str, after: RecordPos | None,
                     limit: int) -> tuple[list[JsonObject], RecordPos | None]:
        """See :meth:`NodeService.records_page`."""
        return self._page(collection, prefix, after, limit, conflicts_only=False)

    def conflicts_page(self, after: RecordPos | None, limit: int
                       ) -> tuple[list[JsonObject], RecordPos | None]:
        """See :meth:`NodeService.conflicts_page`."""
        return self._page(None, "", after, limit, conflicts_only=True)

    def _page(self, collection: str | None, prefix: str, after: RecordPos | None,
              limit: int, *, conflicts_only: bool
              ) -> tuple[list[JsonObject], RecordPos | None]:
        """One page from the store, one row more than ``limit`` read to tell whether
        another page follows."""
        from meshsync.replica.records import Record

        rows = self.node.store.records_page(collection, prefix, after, limit + 1,
                                            live_only=not conflicts_only,
                                            conflicts_only=conflicts_only)
        more = len(rows) > limit
        rows = rows[:limit]
        return ([Record.from_row(r).to_json() for r in rows],
                record_pos(rows[-1]) if more else None)

    def get_record(self, collection: str, key: str, partition: str | None
                   ) -> JsonObject | None:
        """See :meth:`NodeService.get_record`."""
        record = self.node.get(collection, key, partition)
        return record.to_json() if record else None

    def progress(self, collection: str) -> JsonObject:
        """See :meth:`NodeService.progress`."""
        from meshsync.replica.progress import progress

        return progress(self.node.store, collection)

    def conflicts(self) -> list[JsonObject]:
        """See :meth:`NodeService.conflicts`."""
        return [r.to_json() for r in self.node.conflicts()]

    def laptop_facts(self, devices: set[str]) -> JsonObject:
        """See :meth:`NodeService.laptop_facts`."""
        from meshsync.daemon.laptop_facts import enrolled_names, open_conflicts, upstream_custody

        held = upstream_custody(self.node)
        # The store has no index of conflicting records: skip the scan when the counts
        # (recounted after every write and session) say there are none.
        conflicts = open_conflicts(self.node) if self.counts.conflicts else []
        authors = {f["author"] for f in held["feeds"]} | {r["author"] for r in held["refused"]}
        writers = {v["author"] for c in conflicts for v in c["versions"]}
        names = enrolled_names(self.node, devices | authors | writers
                               | {self.node.key.device_id})
        return {"held": held, "names": names, "conflicts": conflicts}

    # -- writing ----------------------------------------------------------------------

    def resolve_conflict(self, collection: str, key: str, partition: str, field: str,
                         author: str, hlc: int) -> JsonObject:
        """See :meth:`NodeService.resolve_conflict`."""
        from meshsync.daemon.api_resolve import ConflictGoneError

        record = self.node.get(collection, key, partition)
        versions = record.conflicts.get(field, []) if record else []
        chosen = [v for v in versions if v.author == author and v.hlc == hlc]
        if not chosen or field == "*":
            raise ConflictGoneError(f"{collection}/{key} has no open conflict on {field!r} "
                                    "with that entry any more (resolved meanwhile?)")
        return self.put_record(collection, key, {field: chosen[0].value}, partition)

    def put_record(self, collection: str, key: str, fields: dict[str, object],
                   partition: str | None) -> JsonObject:
        """See :meth:`NodeService.put_record`."""
        change = self.node.put(collection, key, fields, partition)
        self.refresh()
        record = self.node.get(collection, key, change.partition)
        return {"author": device_id(change.author), "seq": change.seq,
                "partition": change.partition, "hash": change.hash.hex(),
                "record": record.to_json() if record else None}

    def delete_record(self, collection: str, key: str, partition: str | None
                      ) -> JsonObject:
        """See :meth:`NodeService.delete_record`."""
        change = self.node.delete(collection, key, partition)
        self.refresh()
        return {"author": device_id(change.author), "seq": change.seq,
                "partition": change.partition, "hash": change.hash.hex()}

    def import_bundle(self, source: BinaryIO, name: str) -> JsonObject:
        """See :meth:`NodeService.import_bundle`."""
        from meshsync.protocol.bundle import import_bundle

        report = import_bundle(self.node, source, source=f"bundle:{name}")
        self.refresh()
        return report.to_json()

    def import_voters(self, path: Path, batch_size: int) -> JsonObject:
        """See :meth:`NodeService.import_voters`. Sets the home's schema to coklit; a
        file refused before anything is written (not a voter list) changes nothing."""
        config, validators = self.home.config(), dict(self.node.validators)
        held = self._changes_held()
        if adopt_schema(self.home, COKLIT_SCHEMA):
            use_schema(self.node, self.home)
        try:
            report = schema_import(self.node, COKLIT_SCHEMA, path, batch_size=batch_size)
        except MeshsyncError:
            if self._changes_held() == held:  # refused before writing: leave all as it was
                self.home.write_config(config)
                self.node.validators.clear()
                self.node.validators.update(validators)
            raise
        self.refresh()
        return report

    def _changes_held(self) -> int:
        return sum(f.head_seq for f in self.node.store.feeds())

    def enroll(self, pem: bytes, name: str) -> JsonObject:
        """See :meth:`NodeService.enroll`."""
        done = enrol(self.home, pem, name, self.node)
        self.switch_key(done)
        self.refresh()
        return {"enrolment": done.data, "warnings": list(done.warnings)}

    def rekey(self, name: str | None) -> JsonObject:
        """See :meth:`NodeService.rekey`."""
        return start_rekey(self.home, name, self.node)

    def add_credentials(self, blobs: list[bytes]) -> JsonObject:
        """See :meth:`NodeService.add_credentials`: each through the node's
        ``add_credential`` (its trust store checks and learns it, a revocation
        quarantines)."""
        added = sum(self.node.add_credential(blob) for blob in blobs)
        self.refresh()
        return {"added": added, "held": len(blobs) - added}

    def switch_key(self, done: Enrolment) -> None:
        """Follow an enrolment: sign with :attr:`Enrolment.new_key` if it switched keys
        (the daemon also reloads its TLS certificate)."""
        if done.new_key is not None:
            self.node.key = done.new_key

    def refresh(self) -> None:
        """Recount what the status shows (cheap counts), the advertised digest and the
        custody summary."""
        from meshsync.replica.custody import custody

        self.custody = custody(self.node)
        self.counts = count_store(self.node)
