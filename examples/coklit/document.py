"""The ``voters`` rules as a declarative schema document, and their named rules.

``meshsync authority schema publish coklit`` signs :func:`document` at the root
authority (KPU); the document then travels to every device as a credential
(docs/architecture.md §4, §6) and every device validates ``voters`` with the newest
version it holds. The declarative parts (types, required fields, codes, patterns,
ranges) are read by the library (:mod:`meshsync.replica.schema`); what a table
cannot say stays code here, selected by name from the document (:data:`PACKAGE`,
declared in the ``meshsync.schema_packages`` entry point group):

* field rules ``nik``, ``nkk`` (16 digits, NIK layout: :mod:`.nik`), ``nama``
  (:func:`.schema.check_nama`), ``date`` (``YYYY-MM-DD``), ``distrik`` (a distrik of
  Mimika), ``dpt`` (the stored baseline: each value passes its field's rule);
* record rules ``cross`` (NIK against birth date and sex, age, TMS reason, kampung
  in distrik: :mod:`.checks`) and ``partition`` (a voter is kept under its TPS).

The document's ``params`` carry the mesh-wide :class:`~.checks.Rules` settings
(``election_day``, ``nik_region``), so every device uses the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from meshsync.coklit import regions
from meshsync.coklit.checks import Rules, cross_checks, date_of
from meshsync.coklit.codes import DISABILITAS, JENIS_KELAMIN, STATUS_KAWIN, STATUSES, TMS_REASONS
from meshsync.coklit.fastcheck import accepts
from meshsync.coklit.nik import length_problem, nik_problem
from meshsync.coklit.schema import (
    COLLECTION,
    DEFAULT_RULES,
    FIELD_CHECKS,
    FIELDS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    REQUIRED,
    check_nama,
    check_partition,
    register_search_of_voters,
)
from meshsync.coklit.visits import outcome

from meshsync.model.codec import canonical_value
from meshsync.replica.progress import register_classifier

_TEXT = {"type": "text", "max_chars": MAX_TEXT_CHARS}
_RT_HINT = '1-3 digits as text (e.g. "003") or empty'


def _fields() -> dict[str, dict[str, Any]]:
    """Every ``voters`` field's declarative spec (see :mod:`.schema` for meanings)."""
    specs: dict[str, dict[str, Any]] = {
        "nkk": {"type": "text", "check": "nkk"},
        "nik": {"type": "text", "check": "nik"},
        "nama": {"type": "text", "max_chars": MAX_NAME_CHARS, "check": "nama"},
        "tempat_lahir": dict(_TEXT),
        "tanggal_lahir": {"type": "text", "check": "date"},
        "umur": {"type": "integer", "min": 0, "max": 150, "hint": "years"},
        "status_kawin": {"codes": dict(STATUS_KAWIN)},
        "jenis_kelamin": {"codes": dict(JENIS_KELAMIN)},
        "alamat": dict(_TEXT),
        "rt": {"type": "text", "pattern": r"\d{1,3}", "hint": _RT_HINT},
        "rw": {"type": "text", "pattern": r"\d{1,3}", "hint": _RT_HINT},
        "disabilitas": {"type": "list", "codes": dict(DISABILITAS), "unique": True},
        "distrik": {"type": "text", "check": "distrik"},
        "kampung": dict(_TEXT),
        "tps": {"type": "integer", "min": 1, "max": regions.MAX_TPS,
                "hint": "use tps:=3 on the command line"},
        "coklit": {"codes": dict(STATUSES)},
        "tms": {"codes": {k: v[1] for k, v in TMS_REASONS.items()}},
        "dpt": {"type": "map", "check": "dpt"},
        "status": {"codes": dict(STATUSES)},
    }
    for name in REQUIRED:
        specs[name]["required"] = True
    return specs


def document(rules: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """``{"collection": "voters", "body": ...}``: the body a root authority signs
    (:func:`meshsync.trust.schemadoc.make_schema`); ``rules`` become its params."""
    body = {"title": "KPU voter list (coklit)", "package": "coklit", "order": list(FIELDS),
            "fields": _fields(), "rules": ["cross", "partition"],
            "params": {"election_day": rules.election_day.isoformat(),
                       "nik_region": rules.nik_region}}
    return {"collection": COLLECTION, "body": body}


def _rules_of(params: dict[str, Any]) -> Rules:
    """The :class:`Rules` a document's params name (defaults for missing ones)."""
    day = params.get("election_day")
    region = params.get("nik_region", DEFAULT_RULES.nik_region)
    return Rules(date.fromisoformat(day) if isinstance(day, str) else DEFAULT_RULES.election_day,
                 region if region in ("distrik", "kabupaten", "off") else "distrik")


_CROSS: dict[Rules, list[Any]] = {}


def _cross(ok: dict[str, Any], given: set[str], whole: bool, partition: str | None,
           params: dict[str, Any]) -> list[tuple[str, str]]:
    rules = _rules_of(params)
    checks = _CROSS.get(rules) or _CROSS.setdefault(rules, cross_checks(rules))
    problems: list[tuple[str, str]] = []
    for check in checks:
        problems += check(ok, given, whole)
    return problems


def _partition(ok: dict[str, Any], given: set[str], whole: bool, partition: str | None,
               params: dict[str, Any]) -> list[tuple[str, str]]:
    return [] if partition is None else check_partition(ok, partition, whole=whole)


class _Dpt:
    """The ``dpt`` rule; an entry equal to the record's own field is checked once,
    as that field (the import writes both alike: :func:`.schema._dpt_once`)."""

    takes_record = True

    def __call__(self, value: Any, given: dict[str, Any]) -> str | None:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in given or given[k] != v}
        return FIELD_CHECKS["dpt"](value)


@dataclass(frozen=True)
class CoklitPackage:
    """The coklit schema package (:class:`meshsync.replica.schema.SchemaPackage`)."""

    field_rules: dict[str, Any]
    record_rules: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The current ``voters`` document: see :func:`document`."""
        return document()

    def fast_acceptance(self, body: dict[str, Any]) -> Any:
        """For a document ``body`` that is exactly this package's own (with the rules
        its params name), ``accept(fields, partition) -> bool``: True only for a whole
        record it finds valid (:func:`.fastcheck.accepts`); None for any other body
        (an older or newer version judges by its own declarations)."""
        rules = _rules_of(body.get("params", {}))
        # compared as signed (canonical: a decoded body has lists where ours has tuples)
        if canonical_value(body) != canonical_value(document(rules)["body"]):
            return None

        def accept(fields: dict[str, Any], partition: str) -> bool:
            return accepts(fields, partition, rules, FIELD_CHECKS, REQUIRED)
        return accept


PACKAGE = CoklitPackage(
    field_rules={
        "nkk": lambda v: length_problem(v, "NKK, nomor Kartu Keluarga"),
        "nik": lambda v: length_problem(v, "NIK, Nomor Induk Kependudukan") or nik_problem(v),
        "nama": check_nama,
        "date": lambda v: None if date_of(v) else
        f"must be a date YYYY-MM-DD (e.g. 1980-03-15), not {v!r}",
        "distrik": FIELD_CHECKS["distrik"],
        "dpt": _Dpt(),
    },
    record_rules={"cross": _cross, "partition": _partition},
)
"""The entry point object of ``meshsync.schema_packages`` ``coklit``."""

# A node that validates voters by the signed document loads this package, not
# :func:`meshsync.coklit.schema.register`: count progress the coklit way there too.
register_classifier(COLLECTION, outcome)
register_search_of_voters()

__all__ = ["PACKAGE", "CoklitPackage", "document"]
