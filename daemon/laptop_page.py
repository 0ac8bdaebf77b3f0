"""The PPK laptop's page (``/`` on a gateway daemon; central and phones serve the plain
status page, :mod:`.status_page`): what an operator in a distrik reads, in Indonesian by
default (docs/architecture.md §9).

Server-rendered with Jinja2 (``templates/laptop/page.html``, :mod:`.templating`), fully
useful without scripts; ``static/laptop/live.js`` keeps it current from the events
stream (``GET /api/events``) by fetching the page again when something changed, with no
reload loop. This module turns the daemon's documents (status, peers, progress) and
the node's facts (:mod:`.laptop_facts`) into the template's plain context: every value
is a number, a time in milliseconds or text, never a Python structure to print.
"""

from __future__ import annotations

import json
from typing import Any

from meshsync.daemon.laptop_facts import per_group
from meshsync.daemon.templating import render

from meshsync.host import i18n
from meshsync.model.text import N_

#: The coklit result labels shown as columns of the progress tables, in this order.
LABELS = ("MS", "TMS", "ubah", "baru")
#: Certificate roles -> what a person calls the device (the words stay in config).
ROLES = {"pantarlih": N_("Pantarlih phone"), "gateway": N_("PPK laptop"),
         "central": N_("KPU server"), "admin": N_("admin")}


def headline(uplink: dict[str, Any] | None, waiting: int, role: str | None = None
             ) -> dict[str, Any]:
    """The page's first line: ``kind`` is ``up`` (connected to KPU), ``down`` (lost
    since ``since_ms``, the last successful sync), ``never`` (no sync with KPU ever
    succeeded), ``none`` (no uplink configured) or ``phone`` (a Pantarlih phone with
    no uplink: its changes reach KPU through the laptop); ``waiting`` changes KPU has
    not confirmed. Never ``up`` unless the uplink's last attempt succeeded."""
    if uplink is None:
        kind = "phone" if role == "pantarlih" else "none"
    elif uplink.get("state") == "up":
        kind = "up"
    elif uplink.get("last_sync_ms"):
        kind = "down"
    else:
        kind = "never"
    return {"kind": kind, "since_ms": (uplink or {}).get("last_sync_ms"),
            "last_error": (uplink or {}).get("last_error") or "",
            "targets": ", ".join((uplink or {}).get("targets") or []), "waiting": waiting}


def _short(dev: str | None) -> str:
    return (dev or "")[:8]


def _who(dev: str | None, names: dict[str, dict[str, str]]) -> str:
    """A device as a person reads it: its enrolment name, else a short id."""
    known = names.get(dev or "")
    return known["name"] if known and known["name"] else _short(dev) or "?"


#: Most TPS named in one cell; the rest are counted.
MAX_TPS_SHOWN = 3


def _tps(scope: str) -> str:
    """A TPS partition as its kampung and TPS (``diloa/tps-001``); another scope whole."""
    return "/".join(scope.split("/")[-2:]) if "/tps-" in scope else scope


def _where(dev: str | None, names: dict[str, dict[str, str]],
           wrote: dict[str, list[str]]) -> str:
    """Where a device writes: its feeds' TPS (``tps-001``), else its certificate's scope."""
    written = sorted({_tps(p) for p in wrote.get(dev or "", [])})
    if len(written) > MAX_TPS_SHOWN:
        return ", ".join(written[:MAX_TPS_SHOWN]) + f", … (+{len(written) - MAX_TPS_SHOWN})"
    if written:
        return ", ".join(written)
    return _tps(names.get(dev or "", {}).get("scope", ""))


def _harmless(error: str | None) -> bool:
    """A busy race (both sides dialled at once) is no failure: the other session runs."""
    return bool(error) and str(error).startswith("busy")


def phone_rows(peers: list[dict[str, Any]], names: dict[str, dict[str, str]],
               wrote: dict[str, list[str]], lang: str | None = None) -> list[dict[str, Any]]:
    """One row per peer: ``name``, ``tps``, ``role`` (msgid), ``last_seen_ms``,
    ``last_sync_ms``, ``to_send`` / ``to_receive`` (int or None: unknown until a
    session), ``state`` (``syncing``, ``failing``, ``ok``, ``never``), ``error`` and
    ``warnings`` (the last session's clock warnings, English lines), ``skew_s`` (how
    far its clock is from this one's, seconds); the uplink (KPU) is left out.
    ``wrote``: device id -> the partitions of its feeds held here (a phone's TPS); a
    device that wrote nothing shows its certificate's scope. An ``error`` the core
    marked for translation (a protocol version refusal) is in ``lang``."""
    rows = []
    for p in peers:
        if any(a.get("via") == "uplink" for a in p.get("addresses") or []):
            continue  # KPU: the headline speaks of it
        dev, known = p.get("device_id"), names.get(p.get("device_id") or "", {})
        error = None if _harmless(p.get("last_error")) else p.get("last_error")
        if p.get("syncing"):
            state = "syncing"
        elif p.get("failures") and error:
            state = "failing"
        else:
            state = "ok" if p.get("last_sync_ms") else "never"
        role = known.get("role") or p.get("role") or ""
        rows.append({"name": _who(dev, names), "device": _short(dev),
                     "tps": _where(dev, names, wrote), "role": ROLES.get(role, ""),
                     "last_seen_ms": p.get("last_seen_ms"), "last_sync_ms": p.get("last_sync_ms"),
                     "to_send": p.get("pending"), "to_receive": p.get("to_receive"),
                     "state": state, "error": i18n.localize(error, lang) if error else "",
                     "warnings": list(p.get("clock_warnings") or []),
                     "skew_s": abs(int(p.get("clock_skew_ms") or 0)) // 1000})
    return sorted(rows, key=lambda r: (r["role"] != ROLES["pantarlih"], r["name"]))


def custody_view(held: dict[str, Any], names: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The custody section: totals per TPS and per device, KPU's refusals named."""
    per_tps = [{"tps": tps, **n} for tps, n in per_group(held["feeds"], "partition").items()]
    wrote = written_partitions(held)
    per_phone = [{"name": _who(dev, names), "tps": _where(dev, names, wrote), **n}
                 for dev, n in per_group(held["feeds"], "author").items()]
    refused = [{**r, "name": _who(r["author"], names)} for r in held["refused"]]
    return {"waiting": held["waiting"], "confirmed_ms": held["confirmed_ms"],
            "per_tps": per_tps, "per_phone": per_phone, "refused": refused}


def written_partitions(held: dict[str, Any]) -> dict[str, list[str]]:
    """device id -> the partitions of its feeds the laptop holds (sorted)."""
    out: dict[str, list[str]] = {}
    for f in held["feeds"]:
        out.setdefault(f["author"], []).append(f["partition"])
    return out


def shown_value(value: Any) -> str:
    """A field value as text on the page: text as it is, numbers as numbers, nothing
    as an empty string, anything structured as compact JSON (never a Python repr)."""
    from meshsync.model.values import value_to_json

    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value_to_json(value), ensure_ascii=False, separators=(", ", ": "))


def conflict_rows(conflicts: list[dict[str, Any]], names: dict[str, dict[str, str]]
                  ) -> list[dict[str, Any]]:
    """The conflicts with each version's value as text and its writer's name."""
    return [{**c, "versions": [{**v, "text": shown_value(v["value"]),
                                "writer": _who(v["author"], names)} for v in c["versions"]]}
            for c in conflicts]


def progress_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Progress rows (``replica.progress``) as ``{"where", "name", "done", "records",
    "labels": {label: n}, "conflicts"}``: ``name`` is the last path segment."""
    return [{"where": where, "name": where.rsplit("/", 1)[-1],
             "parent": where.rsplit("/", 2)[-2] if where.count("/") >= 1 else "",
             "done": row.get("done", 0), "records": row["records"],
             "labels": {label: row["status"].get(label, 0) for label in LABELS},
             "conflicts": row["conflicts"]} for where, row in rows.items()]


def render_laptop(status: dict[str, Any], peers: list[dict[str, Any]],
                  progress: dict[str, Any], facts: dict[str, Any],
                  lang: str | None = None) -> str:
    """The whole page as HTML in ``lang`` (default: :func:`meshsync.host.i18n.page_lang`).

    ``status``/``peers``/``progress``: the API's documents; ``facts``: ``{"held":
    upstream_custody(...), "names": enrolled_names(...), "conflicts": open_conflicts(...)}``
    (:mod:`.laptop_facts`)."""
    lang = lang or i18n.page_lang()
    names, held = facts["names"], facts["held"]
    clock = status.get("clock") or {}
    return render(
        "laptop/page.html", lang, status=status, device=status["device_id"][:16],
        me=_who(status["device_id"], names),
        head=headline(status.get("uplink"), held["waiting"], status.get("role")),
        custody=custody_view(held, names),
        phones=phone_rows(peers, names, written_partitions(held), lang),
        conflicts=conflict_rows(facts["conflicts"], names),
        villages=progress_rows(progress.get("village", {})),
        tps_rows=progress_rows(progress.get("tps", {})), labels=LABELS,
        date_wrong=i18n.localize(clock["message"], lang)
        if clock and not clock.get("plausible", True) else "",
        flying=[{**f, "name": _who(f.get("peer"), names)}
                for f in status.get("progress") or []],
        names_json=json.dumps({dev: n["name"] for dev, n in names.items()},
                              ensure_ascii=False))
