"""Re-importing a baseline: a three-way merge that never reverts an officer's work.

Every import stores the row it wrote in the record's ``dpt`` field (the baseline).
The next import compares, field by field, three values: the stored baseline
(*base*), the record as it is now (*current*: the baseline plus whatever officers
changed) and the new file (*new*):

=====================  ===============================  ===========================
case                   meaning                          the import
=====================  ===============================  ===========================
new = current          nothing to do                    unchanged
current = base         nobody touched the field         applies the new value
new = base             only an officer changed it       keeps the officer's value
all three differ       both changed it                  a conflict (below)
=====================  ===============================  ===========================

A conflict is the ordinary kind (docs/architecture.md §4): the import writes the
file's value without superseding the officer's, so both stay as concurrent values
of the field; ``meshsync conflicts`` lists them, the newer (the file's) shows until
someone picks one, and the import lists each. Fields that only make sense together
are merged as one: the result (``coklit`` with ``tms``) and the NIK with the birth
date, sex and age it encodes.

Records without a stored baseline (no ``dpt``: imported before baselines were
stored, or created by an officer, e.g. a pemilih baru): a field still written by
the op that wrote the record's ``nik``, when this importing device signed that op
(its old import), is untouched (its base is its value); every other field, and the
result (``coklit``, ``tms``: old imports never wrote ``coklit``), has an unknown
base and is kept as it is unless the file agrees with it. The import then stores
the baseline, so the next one merges exactly. A deleted record stays deleted (kept).

One put carries one ``pred`` for all its fields: if an officer's op that is in
conflict with the file on one field also wrote another field the import applies,
that field shows both values too (a wider conflict, never a lost value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshsync.coklit.schema import IMPORTED, RESULT

from meshsync.model.change import OpId
from meshsync.replica.crdt import RecordState

GROUPS: tuple[tuple[str, ...], ...] = (
    ("coklit", "tms"), ("nik", "tanggal_lahir", "jenis_kelamin", "umur"),
    *((name,) for name in IMPORTED
      if name not in ("coklit", "tms", "nik", "tanggal_lahir", "jenis_kelamin", "umur")))
"""Fields merged together (each field is in exactly one group)."""

UNKNOWN = object()
"""The base of a field an officer changed before baselines were stored."""


@dataclass(frozen=True)
class FieldConflict:
    """A field both the new baseline and an officer changed: the officer's value
    (``officer``, None if cleared) and the file's (``file``, None if blank)."""

    line: int
    partition: str
    key: str
    field: str
    officer: Any
    file: Any

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every attribute."""
        return {"line": self.line, "partition": self.partition, "key": self.key,
                "field": self.field, "officer": self.officer, "file": self.file}


@dataclass
class Plan:
    """What the import writes for one row.

    ``kind``: ``"new"`` (no record yet), ``"updated"`` (a visible field changes or
    conflicts) or ``"unchanged"``. ``fields``: the put (None: nothing to write);
    ``keep``: op ids the put must leave live (the officers' side of conflicts);
    ``applied``, ``kept``, ``conflicts``: field names in each case; ``kept_values``:
    (field, the officer's value kept, the file's value) for each kept field.
    """

    kind: str
    fields: dict[str, Any] | None = None
    keep: set[OpId] = field(default_factory=set)
    applied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, Any, Any]] = field(default_factory=list)
    kept_values: list[tuple[str, Any, Any]] = field(default_factory=list)


def baseline_of(row: dict[str, Any]) -> dict[str, Any]:
    """The ``dpt`` value stored for an imported row: its imported fields."""
    return {k: v for k, v in row.items() if k in IMPORTED and v is not None}


def plan(state: RecordState | None, row: dict[str, Any], importer: bytes) -> Plan:
    """The three-way merge of one file ``row`` (valid fields) into the held ``state``
    (None if this device holds no op of the record), imported by the device whose
    public key is ``importer``; see the module docs."""
    new_base = baseline_of(row)
    if state is None or not state.exists:
        return Plan("new", {**new_base, "dpt": new_base})
    if state.deleted:
        return Plan("unchanged", kept=["*"])
    current = state.visible()
    base = _base_reader(state, current, importer)
    out = Plan("unchanged")
    put: dict[str, Any] = {}
    for group in GROUPS:
        _merge_group(group, state, current, base, new_base, put, out)
    if current.get("dpt") != new_base:
        put["dpt"] = new_base
    if out.applied or out.conflicts:
        out.kind = "updated"
    out.fields = put or None
    return out


def _base_reader(state: RecordState, current: dict[str, Any], importer: bytes) -> Any:
    stored = current.get("dpt")
    if isinstance(stored, dict):
        return stored.get
    nik_op = state.winner("nik")[0] if "nik" in state.entries else None
    if nik_op is not None and nik_op[1] != importer:
        nik_op = None  # created by another device: nothing is this import's baseline

    def legacy(name: str) -> Any:
        if name not in state.entries:
            return None  # never written: absent in the old baseline too
        if name in RESULT or state.winner(name)[0] != nik_op:
            return UNKNOWN
        return current.get(name)
    return legacy


def _merge_group(group: tuple[str, ...], state: RecordState, current: dict[str, Any],
                 base: Any, new: dict[str, Any], put: dict[str, Any], out: Plan) -> None:
    b = tuple(base(n) for n in group)
    c = tuple(current.get(n) for n in group)
    n = tuple(new.get(n) for n in group)
    if n == c:
        return
    changed = [name for name, old, value in zip(group, c, n, strict=True) if old != value]
    if UNKNOWN not in b and c == b:
        out.applied += changed
    elif UNKNOWN in b or n == b:
        out.kept += changed
        out.kept_values += [(name, current.get(name), new.get(name)) for name in changed]
        return
    else:
        out.conflicts += [(name, current.get(name), new.get(name)) for name in changed]
        out.keep |= state.field_ops(changed) - state.tombs
    put.update({name: new.get(name) for name in changed})
