"""What the coklit commands print: whole sentences with named placeholders, so a
later translation (Indonesian first) replaces each template as a whole.

The words of the domain stay as they are: TPS, DPT, coklit, MS, TMS, ubah, baru,
belum dicoklit, Pantarlih.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

IMPORT_SUMMARY = (
    "Read {rows} rows: {new} new voters, {updated} updated, {unchanged} unchanged, "
    "{bad} invalid rows. In voters already held, {applied} baseline changes were applied, "
    "{kept} fields kept the officer's value and {conflicts} fields are in conflict. "
    "Wrote {changes} signed changes in {tps} TPS.")
IMPORT_CONFLICT = (
    "Conflict on line {line}: voter {key} in {partition}, field {field}: the officer "
    "recorded {officer} and the file says {file}. Both are kept; the file's value shows "
    "until someone picks one (meshsync conflicts lists it).")
BAD_ROW = "Line {line} was not imported: {reason}"
IMPORT_INTERRUPTED = (
    "coklit import interrupted (Ctrl-C): {stored} of {total} voters were stored, in whole "
    "batches; run the same import again to store the rest (voters already stored are "
    "kept as they are).")
PROGRESS_LINE = (
    "{prefix}: dicoklit {done} dari {records} (MS {MS}, TMS {TMS}, ubah {ubah}, "
    "baru {baru}; belum dicoklit {belum}); {conflicts} conflicts; last result {last}.")
NO_RESULT_YET = "none yet"
NO_VOTERS = "No voters here yet."


def import_lines(report: dict[str, Any]) -> list[str]:
    """The import's summary, then each conflict and each invalid row, from
    :meth:`ImportReport.to_json <meshsync.coklit.dpt_csv.ImportReport.to_json>`."""
    lines = [IMPORT_SUMMARY.format(
        rows=report["rows"], new=report["new"], updated=report["updated"],
        unchanged=report["unchanged"], bad=len(report["bad"]), applied=report["applied"],
        kept=report["kept"], conflicts=len(report["conflicts"]),
        changes=report["changes"], tps=report["partitions"])]
    lines += [IMPORT_CONFLICT.format(**{**c, "officer": _shown(c["officer"]),
                                        "file": _shown(c["file"])})
              for c in report["conflicts"]]
    lines += [BAD_ROW.format(**b) for b in report["bad"]]
    return lines


def _shown(value: Any) -> str:
    return "nothing (blank)" if value is None else repr(value)


def when(ms: int | None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of Unix milliseconds, or :data:`NO_RESULT_YET`."""
    if ms is None:
        return NO_RESULT_YET
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def progress_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """One line per row of :func:`meshsync.replica.progress.progress` (a level's
    ``{prefix: row}``): "dicoklit X dari Y" with the counts per result."""
    lines = []
    for prefix, row in rows.items():
        counts = row["status"]
        lines.append(PROGRESS_LINE.format(
            prefix=prefix, done=row["done"], records=row["records"],
            MS=counts.get("MS", 0), TMS=counts.get("TMS", 0), ubah=counts.get("ubah", 0),
            baru=counts.get("baru", 0), belum=counts.get("belum dicoklit", 0),
            conflicts=row["conflicts"], last=when(row["last_done_ms"])))
    return lines or [NO_VOTERS]
