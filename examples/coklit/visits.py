"""Coklit visits: whether a voter has been checked, with what result, by whom, when.

The result is the visible ``coklit`` field (``MS``, ``TMS``, ``ubah``, ``baru``); no
value means *belum dicoklit* (not yet checked). *By whom* and *when* are not typed
in by anyone: they are the author (the device id of the officer's phone, or of
central for a result imported from a file) and the hybrid-clock time of the op that
wrote the visible ``coklit`` value. An HLC's wall-clock part is the author's clock,
corrected forward by every change it had seen, so it is never earlier than a change
the device had received (docs/architecture.md §4).

Homes from before visits (one ``status`` field, MS for a blank KETERANGAN) are read
by this rule, the same in :mod:`meshsync.replica.progress` and in central's SQL view
``meshsync_coklit_progress``: a record with no ``coklit`` value takes its result
from ``status``, except that ``status`` ``MS`` reads as belum dicoklit (the old
import wrote it for every blank KETERANGAN, so it does not show a visit); ``TMS``,
``ubah`` and ``baru`` count as results, by the author of the op that wrote them.
Once an officer records ``coklit``, that is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshsync.coklit.checks import result_of

from meshsync.model.change import OpId
from meshsync.model.hlc import wall_ms
from meshsync.model.identity import device_id
from meshsync.replica.crdt import RecordState
from meshsync.replica.progress import Outcome

BELUM = "belum dicoklit"
"""The label of a voter with no coklit result yet."""


@dataclass(frozen=True)
class Visit:
    """A voter's coklit state.

    ``result``: ``MS``, ``TMS``, ``ubah``, ``baru`` or None (belum dicoklit);
    ``tms``: the reason with ``TMS``; ``by``: device id of the op that wrote the
    result; ``at_ms``: that op's time, Unix milliseconds (None with no result).
    """

    result: str | None
    tms: str | None = None
    by: str | None = None
    at_ms: int | None = None

    @property
    def label(self) -> str:
        """``MS``, ``TMS``, ``ubah``, ``baru`` or ``belum dicoklit``."""
        return self.result or BELUM

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ``coklit`` (the label), ``tms``, ``dicoklit_oleh``,
        ``dicoklit_pada_ms``."""
        return {"coklit": self.label, "tms": self.tms, "dicoklit_oleh": self.by,
                "dicoklit_pada_ms": self.at_ms}


def result_label(fields: dict[str, Any]) -> str:
    """The result of a record's visible ``fields`` by the rule above: ``MS``, ``TMS``,
    ``ubah``, ``baru`` or ``belum dicoklit`` (what SQL and listings can tell)."""
    name, value = result_of(fields)
    if value is None or (name == "status" and value == "MS"):
        return BELUM
    return str(value)


def _winner(state: RecordState, name: str) -> tuple[OpId, Any] | None:
    return state.field_winner(name)


def visit_of(state: RecordState) -> Visit:
    """The coklit visit of a record state (see the module docs for the rule)."""
    if state.deleted:
        return Visit(None)
    found = _winner(state, "coklit") or _winner(state, "status")
    if found is None or found[1] is None or (found[1] == "MS" and "coklit" not in state.entries):
        return Visit(None)
    (hlc, author), result = found
    tms = _winner(state, "tms")
    return Visit(str(result), str(tms[1]) if tms and result == "TMS" else None,
                 device_id(author), wall_ms(hlc))


def outcome(state: RecordState) -> Outcome:
    """The record's line in progress figures (:mod:`meshsync.replica.progress`)."""
    visit = visit_of(state)
    return Outcome(visit.label, visit.result is not None, visit.at_ms)
