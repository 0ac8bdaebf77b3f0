"""What the officer's app reads and writes on the node (docs/app.md).

Every method of :class:`AppData` but :meth:`AppData.sync_state` blocks on the node and
runs in a worker thread under the node's limiter (:func:`meshsync.daemon.api.in_thread`).
Writes go through :meth:`meshsync.daemon.service.LocalNode.put_record`, the API's own
write path: the node's normaliser and validator judge them, and a refused edit raises
:class:`~meshsync.model.errors.ValidationError` with nothing stored.

The app is the coklit officer's: it works on the ``voters`` collection and reads its
coded values (TMS reasons, sex, marital status) from the coklit schema package's
document, looked up by name like every schema (the daemon never imports the example).
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from meshsync.daemon.service import COKLIT_SCHEMA, LocalNode

from meshsync.host.local import schema_package
from meshsync.model.errors import ValidationError
from meshsync.model.text import N_, Msg
from meshsync.replica.edits import Edit, recent_edits
from meshsync.replica.records import Record
from meshsync.replica.search import Entry, SearchIndex

COLLECTION = "voters"
#: The fields an officer edits, in the order of the form: (name, input kind).
FORM_FIELDS = (("nama", "text"), ("nik", "number"), ("nkk", "number"),
               ("tempat_lahir", "text"), ("tanggal_lahir", "date"),
               ("jenis_kelamin", "codes"), ("status_kawin", "codes"), ("alamat", "text"),
               ("rt", "number"), ("rw", "number"))
#: Field -> its name on the officer's screens (translated by the templates).
LABELS = {"nama": N_("Name"), "nik": N_("NIK"), "nkk": N_("NKK"),
          "tempat_lahir": N_("Place of birth"), "tanggal_lahir": N_("Date of birth"),
          "jenis_kelamin": N_("Sex"), "status_kawin": N_("Marital status"),
          "alamat": N_("Address"), "rt": N_("RT"), "rw": N_("RW"),
          "distrik": N_("Distrik"), "kampung": N_("Kampung"), "tps": N_("TPS"),
          "umur": N_("Age"), "disabilitas": N_("Disability"), "coklit": N_("Coklit"),
          "tms": N_("TMS reason"), "partition": N_("TPS")}
#: Copied from a voter of the same TPS into a new voter's record.
REGION_FIELDS = ("distrik", "kampung", "tps")


@functools.cache
def codes() -> dict[str, dict[str, str]]:
    """``field -> {code: meaning}`` of the coklit schema document (empty without it)."""
    package = schema_package(COKLIT_SCHEMA)
    if package is None:
        return {}
    fields = package.document()["body"]["fields"]
    return {name: dict(spec["codes"]) for name, spec in fields.items() if "codes" in spec}


class AppData:
    """The app's node calls on ``service`` (a running daemon's :class:`LocalNode`)."""

    def __init__(self, service: LocalNode) -> None:
        self.service = service
        self.index = SearchIndex(COLLECTION)
        self._own = str(service.home.config().get("partition") or "")

    def fresh(self) -> SearchIndex:
        """The search index, brought up to date with the store."""
        self.index.refresh(self.service.node.store)
        return self.index

    def own_partition(self) -> str:
        """The partition this device writes by default ("" if none)."""
        return self._own

    def tps_list(self) -> list[tuple[str, int, int]]:
        """``(partition, done, records)`` per TPS: not finished first, own TPS first."""
        own = self.own_partition()
        rows = [(p, d, n) for p, (d, n) in self.fresh().counts().items()]
        rows.sort(key=lambda r: (r[0] != own, r[1] >= r[2], r[0]))
        return rows

    def search(self, query: str, limit: int = 50) -> list[Entry]:
        """Voters by name (folded as ``coklit find`` folds) or NIK/NKK digits."""
        return self.fresh().search(query, limit=limit)

    def tps(self, partition: str) -> list[Entry]:
        """The voters of one TPS, belum dicoklit first."""
        return self.fresh().in_partition(partition)

    def card(self, key: str, partition: str) -> tuple[Record | None, list[Edit]]:
        """One voter and this device's edits of it (with custody)."""
        record = self.service.node.get(COLLECTION, key, partition or None)
        return record, recent_edits(self.service.node, COLLECTION, key, limit=20)

    def edits(self) -> list[tuple[Edit, str]]:
        """This device's newest edits of voters, each with its custody step, and the
        voter's name now ("" if unknown)."""
        index = self.fresh()
        return [(e, index.entries[(e.partition, e.key)].name
                 if (e.partition, e.key) in index.entries else "")
                for e in recent_edits(self.service.node, COLLECTION, limit=50)]

    def save(self, key: str, partition: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Write ``fields`` of voter ``key`` in ``partition`` (the API's PUT path).
        ValidationError (field, message) when refused, with nothing stored; a NIK
        another voter already has is refused here too."""
        nik = fields.get("nik")
        if isinstance(nik, str) and nik:
            twins = [e for e in self.fresh().with_number(nik) if e.key != key]
            if twins:
                raise ValidationError(COLLECTION, [("nik", Msg(
                    "this NIK is already on the list: %(name)s (%(partition)s)",
                    name=twins[0].name, partition=twins[0].partition))])
        return self.service.put_record(COLLECTION, key, fields, partition or None)

    def new_voter(self, partition: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Add a new voter (coklit ``baru``) to TPS ``partition``: its key and the
        write's result; region fields come from a voter of that TPS."""
        region: dict[str, Any] = {}
        for entry in self.fresh().in_partition(partition)[:1]:
            record = self.service.node.get(COLLECTION, entry.key, partition)
            if record is not None:
                region = {f: record.fields[f] for f in REGION_FIELDS if f in record.fields}
        key = "baru-" + secrets.token_hex(6)
        return key, self.save(key, partition, {**fields, **region, "coklit": "baru"})
