"""Import and export the voter list (DPT) as CSV.

Import is how central loads the baseline: rows are read and checked first, then the
good ones are written per partition (TPS) in batches of ``batch_size`` rows, one
signed change per batch (docs/architecture.md §11: one signature per ≥ 100 ops keeps
verification cheap). Bad rows never stop an import: each is reported with its line
number in the file and the reason, in the officers' column names. Each row is
judged once, as it is read; the batch's write does not judge those records again
(:class:`meshsync.replica.policy.Judged`). An interrupted import is resumed by the
next import of the same file, which says so (:mod:`meshsync.coklit.resume`).

Importing into records that already exist is a three-way merge against the baseline
the previous import stored (:mod:`meshsync.coklit.merge`): a field an officer changed
keeps the officer's value, a baseline change to an untouched field applies, and a
field both changed becomes a visible conflict, listed in the report. A row that
changes nothing is skipped, so importing the same file twice writes nothing the
second time.

Export works on any node and writes the columns of :mod:`meshsync.coklit.columns`,
one row per visible voter (a field in conflict exports its current winner).

Files are UTF-8 (a byte-order mark from Excel is fine), comma-, semicolon- or
tab-separated (chosen from the header line), with the header on line 1.
"""

from __future__ import annotations

import csv
import gc
import io
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from meshsync.coklit import regions
from meshsync.coklit.columns import (
    COLUMN_OF,
    HEADERS,
    OPTIONAL_HEADERS,
    cells_of,
    fields_of,
    header_name,
)
from meshsync.coklit.merge import FieldConflict, Plan, plan
from meshsync.coklit.resume import finish, marker_of, stored_rows
from meshsync.coklit.schema import COLLECTION, VoterValidator, register

from meshsync.host import i18n
from meshsync.model.change import OpId, check_name
from meshsync.model.codec import canonical_value, pack
from meshsync.model.errors import UsageError, ValidationError
from meshsync.replica.crdt import RecordState
from meshsync.replica.policy import Judged, judge_of

if TYPE_CHECKING:
    from meshsync.replica.node import Node

BATCH_SIZE = 500
Progress = Callable[[int, int], None]
"""``progress(rows_done, rows_total)``, called after each written batch."""


@dataclass(frozen=True)
class BadRow:
    """A row that was not imported: its line in the file and why."""

    line: int
    reason: str


@dataclass
class Row:
    """A good row, ready to write."""

    line: int
    partition: str
    key: str
    fields: dict[str, Any]
    judged: bytes
    """What the validator found valid, encoded canonically (kept as bytes: a third
    of the memory of the fields): the record a new voter becomes (``fields`` and
    their ``dpt`` baseline, :func:`meshsync.coklit.merge.plan`)."""


@dataclass
class ImportReport:
    """What an import did. ``rows`` counts data rows read (blank lines excluded).

    Per row: ``new`` (created), ``updated`` (a field applied or in conflict),
    ``unchanged``, ``bad`` (invalid); ``resumed``: rows an interrupted import of the
    same file had stored, skipped (and counted unchanged: :mod:`.resume`). Per field
    of existing records: ``applied``
    (baseline change to an untouched field), ``kept`` (an officer's value kept),
    ``conflicts`` (both changed; listed); ``kept_fields`` lists each kept field with
    the officer's value and the file's, as a conflict is listed.
    """

    rows: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    applied: int = 0
    kept: int = 0
    changes: int = 0
    conflicts: list[FieldConflict] = field(default_factory=list)
    kept_fields: list[FieldConflict] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)
    bad: list[BadRow] = field(default_factory=list)
    resumed: int = 0

    @property
    def imported(self) -> int:
        """Rows whose record was created or visibly changed."""
        return self.new + self.updated

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary; ``bad`` sorted by line, ``conflicts`` in file order."""
        return {"rows": self.rows, "imported": self.imported, "new": self.new,
                "updated": self.updated, "unchanged": self.unchanged,
                "applied": self.applied, "kept": self.kept,
                "kept_fields": [k.to_json() for k in self.kept_fields],
                "conflicts": [c.to_json() for c in self.conflicts],
                "changes": self.changes, "partitions": len(self.partitions),
                "resumed": self.resumed,
                "bad": [{"line": b.line, "reason": b.reason}
                        for b in sorted(self.bad, key=lambda b: b.line)]}

    def count(self, row: Row, plan: Plan) -> None:
        """Add one written (or skipped) row's plan to the totals."""
        setattr(self, plan.kind, getattr(self, plan.kind) + 1)
        self.applied += len(plan.applied)
        self.kept += len(plan.kept)
        self.conflicts += [FieldConflict(row.line, row.partition, row.key, name, mine, theirs)
                           for name, mine, theirs in plan.conflicts]
        self.kept_fields += [FieldConflict(row.line, row.partition, row.key, name, mine, theirs)
                             for name, mine, theirs in plan.kept_values]


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"{name} line {line} is not UTF-8 text; save the file as "
                         "CSV UTF-8") from exc


def _dialect(text: str) -> str:
    first = text.split("\n", 1)[0]
    return max(",;\t", key=first.count)


def _lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, cells)`` of each record of the CSV text."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_dialect(text))
    last = 0
    for cells in reader:
        yield last + 1, cells
        last = reader.line_num


def _header(cells: list[str], name: str) -> list[str]:
    columns = [header_name(c) for c in cells]
    missing = [h for h in HEADERS if h not in OPTIONAL_HEADERS and h not in columns]
    if missing:
        raise UsageError(f"{name}: the header row lacks column(s) {', '.join(missing)} "
                         f"(expected: {', '.join(HEADERS)})")
    return columns


class _Reader:
    """Turns CSV lines into good :class:`Row` s and :class:`BadRow` s."""

    def __init__(self, validator: VoterValidator, report: ImportReport) -> None:
        self.validator, self.report = validator, report
        self.seen: dict[tuple[str, str], int] = {}

    def row(self, line: int, cells: dict[str, str]) -> Row | None:
        fields, unread = fields_of(cells)
        partition = regions.partition_for_fields(fields)
        key = cells.get("ID", "").strip() or (
            self._derived_key(partition, fields["nik"]) if partition and "nik" in fields
            else "")
        # judged as the record a new voter becomes (the put plan() gives: its fields
        # and their baseline), so the write need not judge it again (Judged); the
        # baseline adds no problem (each of its values is checked as the field's)
        record = canonical_value(plan(None, fields, b"").fields)
        assert isinstance(record, dict)
        problems = [str(e) for e in unread]
        columns = {e.column for e in unread}  # not also reported as missing
        problems += [f"{COLUMN_OF.get(f, f)} ({f}): {i18n.localize(m)}" for f, m in
                     self.validator(key, record, partial=False, partition=partition)
                     if COLUMN_OF.get(f) not in columns]
        if partition is None and not problems:
            problems.append(i18n.gettext("DISTRIK/KAMPUNG/TPS do not name a TPS of Kabupaten "
                                         "Mimika"))
        if problems:
            self.report.bad.append(BadRow(line, "; ".join(problems)))
            return None
        assert partition is not None
        try:
            check_name("key", key)
        except UsageError as exc:
            self.report.bad.append(BadRow(line, f"ID: {exc}"))
            return None
        first = self.seen.setdefault((partition, key), line)
        if first != line:
            self.report.bad.append(BadRow(line, i18n.gettext(
                "ID %(key)s already used on line %(first)d for the same TPS (%(partition)s)")
                % {"key": key, "first": first, "partition": partition}))
            return None
        return Row(line, partition, key, fields, pack(record))

    def _derived_key(self, partition: str, nik: str) -> str:
        key, n = f"nik-{nik}", 1
        while (partition, key) in self.seen:
            n += 1
            key = f"nik-{nik}-{n}"
        return key


def read_rows(text: str, name: str, validator: VoterValidator,
              report: ImportReport) -> list[Row]:
    """Parse and check every row of CSV ``text``; bad rows go to ``report.bad``.

    Raises :class:`UsageError` if the file is empty or its header lacks a column.
    """
    lines = _lines(text)
    first = next(lines, None)
    if first is None:
        raise UsageError(f"{name} is empty; expected a header row ({', '.join(HEADERS)})")
    columns = _header(first[1], name)
    reader = _Reader(validator, report)
    rows = []
    for line, cells in lines:
        if not any(c.strip() for c in cells):
            continue
        report.rows += 1
        if len(cells) > len(columns):
            report.bad.append(BadRow(line, i18n.gettext(
                "has %(cells)d cells; the header has %(columns)d")
                % {"cells": len(cells), "columns": len(columns)}))
            continue
        row = reader.row(line, dict(zip(columns, cells, strict=False)))
        if row is not None:
            rows.append(row)
    return rows


def import_csv(node: Node, path: Path | str, *, batch_size: int = BATCH_SIZE,
               progress: Progress | None = None) -> ImportReport:
    """Import the voter list at ``path`` into ``node``; returns the report.

    Registers the ``voters`` validator on the node if it has none; rows are checked
    by the validator the node's writes get (a signed schema document, if held). Raises
    :class:`UsageError` for an unreadable file (not UTF-8, no header, a missing
    column) before writing anything, and passes on a write refusal (e.g. the device
    may not write a partition); batches written before it stay. Ctrl-C raises
    :class:`ImportInterrupted`, which says how many rows were stored; running the same
    import again resumes after them (``report.resumed``, :mod:`.resume`).

    Python's cyclic garbage collector is paused meanwhile (in the whole process): the
    rows read, a few acyclic objects each and all kept until the end, made its
    collections, which walk every live object, cost 10-30% of an import of 50,000 rows.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _import(node, path, batch_size=batch_size, progress=progress)
    finally:
        if enabled:
            gc.enable()


def _import(node: Node, path: Path | str, *, batch_size: int,
            progress: Progress | None) -> ImportReport:
    """The import itself: see :func:`import_csv`."""
    path = Path(path)
    validator: Any = node.validators.get(COLLECTION)
    if not isinstance(validator, VoterValidator):
        coded = register(node)  # also the progress classifier
        # a signed schema document, when held, judges the writes: rows are checked by it
        validator = node.validators.get(COLLECTION) or coded
    report = ImportReport()
    rows: list[Row] = []
    done = 0
    try:
        data = path.read_bytes()
        rows = read_rows(_decode(data, str(path)), str(path), validator, report)
        ordered = [row for group in _by_partition(rows).values() for row in group]
        marker = marker_of(data, ((row.partition, row.key) for row in ordered))
        done = report.resumed = stored_rows(node, marker, len(ordered))
        for row in ordered[:done]:  # stored by the interrupted run of this file
            report.unchanged += 1
            report.partitions.add(row.partition)
        if done and progress is not None:
            progress(done, len(rows))
        # one sync of the store for all the batches, when the block ends (also on
        # Ctrl-C): a power cut before it loses batches with their progress marker
        # together, so the resume point stays exact
        with node.store.group_commit():
            for partition, group in _by_partition(ordered[done:]).items():
                report.partitions.add(partition)
                for start in range(0, len(group), batch_size):
                    batch = group[start:start + batch_size]
                    with _ctrl_c_between_batches():  # ``done`` counts what is committed
                        _write_batch(node, partition, batch, report, validator,
                                     marker.at(done + len(batch)))
                        done += len(batch)
                    if progress is not None:
                        progress(done, len(rows))
            finish(node)
    except KeyboardInterrupt as exc:
        raise ImportInterrupted(done, len(rows), report) from exc
    return report


@contextmanager
def _ctrl_c_between_batches() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that comes while a batch is written and counted, and raise
    it as KeyboardInterrupt once both are done: a batch committed is always counted
    (only in the main thread, where Python delivers signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: held.append(number))
    previous = signal.default_int_handler if previous is None else previous
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


class ImportInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`import_csv`. The import is resumable, not atomic: each batch
    is one signed change, committed by itself, so ``stored`` of the file's ``total``
    good rows are in the store (whole batches; a Ctrl-C while a batch is written takes
    effect once that batch is stored and counted) and importing the same file again
    resumes: it skips the rows stored, stores the rest and says so
    (:mod:`meshsync.coklit.resume`). ``report`` is the partial report.
    """

    def __init__(self, stored: int, total: int, report: ImportReport) -> None:
        super().__init__(f"import interrupted: {stored} of {total} rows stored")
        self.stored, self.total, self.report = stored, total, report


def _by_partition(rows: Iterable[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.partition, []).append(row)
    return groups


def _plans(node: Node, partition: str, batch: list[Row]) -> list[tuple[Row, Plan]]:
    """Each row's three-way merge with the record held (one store read for the batch)."""
    held = node.store.load_records([(partition, COLLECTION, row.key) for row in batch])
    own = node.key.public_key
    plans = []
    for row in batch:
        found = held.get((partition, COLLECTION, row.key))
        plans.append((row, plan(RecordState.decode(found.state) if found else None,
                                row.fields, own)))
    return plans


def _edit(row: Row, todo: Plan) -> tuple[str, str, str, dict[str, Any], set[OpId]]:
    assert todo.fields is not None
    return ("put", COLLECTION, row.key, todo.fields, todo.keep)


def _write_batch(node: Node, partition: str, batch: list[Row], report: ImportReport,
                 validator: Any, meta: dict[str, bytes]) -> None:
    """Write ``batch`` (rows of ``partition``) as one signed change, in one
    transaction with ``meta`` (the import's progress, :mod:`.resume`); a new voter's
    record, already judged by ``validator`` as its row was read, is not judged again
    (:class:`~meshsync.replica.policy.Judged`)."""
    plans = _plans(node, partition, batch)
    todo = [(row, p) for row, p in plans if p.fields is not None]
    for row, p in plans:
        if p.fields is None:
            report.count(row, p)
    if not todo:
        _store_meta(node, meta)
        return
    judged = Judged(judge_of(validator), {(partition, COLLECTION, row.key): row.judged
                                          for row, p in todo if p.kind == "new"})
    try:
        node.write(partition, [_edit(r, p) for r, p in todo], judged=judged, meta=meta)
    except ValidationError:
        _write_one_by_one(node, partition, todo, report)  # a held record makes it invalid
        _store_meta(node, meta)
        return
    for row, p in todo:
        report.count(row, p)
    report.changes += 1


def _store_meta(node: Node, meta: dict[str, bytes]) -> None:
    with node.store.transaction():
        for name, value in meta.items():
            node.store.set_meta(name, value)


def _write_one_by_one(node: Node, partition: str, todo: list[tuple[Row, Plan]],
                      report: ImportReport) -> None:
    for row, p in todo:
        try:
            node.write(partition, [_edit(row, p)])
        except ValidationError as exc:
            report.bad.append(BadRow(row.line, f"with the record already held: {exc}"))
            continue
        report.count(row, p)
        report.changes += 1


def write_csv(out: TextIO, records: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
    """Write the header and one row per ``(partition, key, fields)``; returns the row count.

    ``NO`` restarts at 1 for each partition (TPS), in the order given.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADERS)
    count, numbers = 0, dict[str, int]()
    for partition, key, fields in records:
        numbers[partition] = numbers.get(partition, 0) + 1
        writer.writerow(cells_of(fields, numbers[partition], key))
        count += 1
    return count


def export_csv(node: Node, out: TextIO, partition_prefix: str = "") -> int:
    """Write the voters under ``partition_prefix`` as CSV to ``out``; returns the row count.

    Rows are ordered by partition, then family card (NKK), then key.
    """
    records = sorted(node.records(COLLECTION, partition_prefix),
                     key=lambda r: (r.partition, str(r.fields.get("nkk", "")), r.key))
    return write_csv(out, ((r.partition, r.key, r.fields) for r in records))
