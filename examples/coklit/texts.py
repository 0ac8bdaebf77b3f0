"""What the coklit commands print: whole sentences with named placeholders, marked
with ``N_`` and translated as a whole where they are printed (the reader's language,
:mod:`meshsync.host.i18n`).

The words of the domain stay as they are: TPS, DPT, coklit, MS, TMS, ubah, baru,
belum dicoklit, Pantarlih.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from meshsync.host import i18n
from meshsync.model.text import N_

IMPORT_SUMMARY = N_(
    "Read {rows} rows: {new} new voters, {updated} updated, {unchanged} unchanged, "
    "{bad} invalid rows. In voters already held, {applied} baseline changes were applied, "
    "{kept} fields kept the officer's value and {conflicts} fields are in conflict. "
    "Wrote {changes} signed changes in {tps} TPS.")
IMPORT_CONFLICT = N_(
    "Conflict on line {line}: voter {key} in {partition}, field {field}: the officer "
    "recorded {officer} and the file says {file}. Both are kept; the file's value shows "
    "until someone picks one (meshsync conflicts lists it).")
BAD_ROW = N_("Line {line} was not imported: {reason}")
IMPORT_RESUMED = N_(
    "Resuming the import: {stored} rows already stored by the interrupted import of this "
    "file were skipped.")
IMPORT_INTERRUPTED = N_(
    "coklit import interrupted (Ctrl-C): {stored} of {total} voters were stored, in whole "
    "batches; run the same import again to store the rest (voters already stored are "
    "kept as they are).")
PROGRESS_LINE = N_(
    "{prefix}: dicoklit {done} dari {records} (MS {MS}, TMS {TMS}, ubah {ubah}, "
    "baru {baru}; belum dicoklit {belum}); {conflicts} conflicts; last result {last}.")
NO_RESULT_YET = N_("none yet")
NO_VOTERS = N_("No voters here yet.")


def import_lines(report: dict[str, Any]) -> list[str]:
    """The import's summary, then each conflict and each invalid row, from
    :meth:`ImportReport.to_json <meshsync.coklit.dpt_csv.ImportReport.to_json>`."""
    _ = i18n.gettext
    lines = [_(IMPORT_RESUMED).format(stored=report["resumed"])] if report.get(
        "resumed") else []
    lines += [_(IMPORT_SUMMARY).format(
        rows=report["rows"], new=report["new"], updated=report["updated"],
        unchanged=report["unchanged"], bad=len(report["bad"]), applied=report["applied"],
        kept=report["kept"], conflicts=len(report["conflicts"]),
        changes=report["changes"], tps=report["partitions"])]
    lines += [_(IMPORT_CONFLICT).format(**{**c, "officer": _shown(c["officer"]),
                                        "file": _shown(c["file"])})
              for c in report["conflicts"]]
    lines += [_(BAD_ROW).format(**{**b, "reason": i18n.localize(b["reason"])})
              for b in report["bad"]]
    return lines


def _shown(value: Any) -> str:
    return i18n.gettext("nothing (blank)") if value is None else repr(value)


def when(ms: int | None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of Unix milliseconds (Indonesian: ``7 Des 2026 10.32``
    in this device's time zone), or :data:`NO_RESULT_YET`."""
    if ms is None:
        return i18n.gettext(NO_RESULT_YET)
    if i18n.current() == "id":
        return f"{i18n.day(ms)} {i18n.clock_time(ms)}"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def progress_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """One line per row of :func:`meshsync.replica.progress.progress` (a level's
    ``{prefix: row}``): "dicoklit X dari Y" with the counts per result."""
    lines = []
    for prefix, row in rows.items():
        counts = row["status"]
        lines.append(i18n.gettext(PROGRESS_LINE).format(
            prefix=prefix, done=row["done"], records=row["records"],
            MS=counts.get("MS", 0), TMS=counts.get("TMS", 0), ubah=counts.get("ubah", 0),
            baru=counts.get("baru", 0), belum=counts.get("belum dicoklit", 0),
            conflicts=row["conflicts"], last=when(row["last_done_ms"])))
    return lines or [i18n.gettext(NO_VOTERS)]
