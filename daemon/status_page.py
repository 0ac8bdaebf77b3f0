"""The operator's status page: plain server-rendered HTML, no scripts, no personal data.

Its words come from the ``meshsync`` catalogues (:mod:`meshsync.host.i18n`); the page
speaks Indonesian unless ``$MESHSYNC_LANG`` says otherwise (``lang`` of
:func:`render_status`), with Indonesian numbers (``16.417``) and times ("3 menit lalu").
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from meshsync.host import i18n
from meshsync.model.text import N_

_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#eee}.warn{color:#a40}.ok{color:#070}
"""


#: The daemon's one-word diagnosis (daemon/peers.py) -> what the operator reads.
DIAGNOSES = {
    "ok": N_("ok"),
    "syncing": N_("syncing"),
    "no_peers": N_("no devices nearby found yet"),
    "unreachable": N_("devices nearby do not answer"),
    "isolation_suspected": N_("the Wi-Fi seems to keep devices apart (client isolation)"),
    "offline": N_("the daemon is not running"),
}

#: Certificate roles (the words stay in config and logs) -> what a person calls the device.
ROLES = {"pantarlih": N_("pantarlih"), "gateway": N_("gateway"), "central": N_("central"),
         "admin": N_("admin")}

Tr = Callable[[str], str]


def _role(role: str | None, _: Tr) -> str:
    return _(ROLES[role]) if role in ROLES else role or ""


def _ago(ms: int | None, lang: str) -> str:
    if not ms:
        return i18n.translations(lang).gettext("never")
    return i18n.ago(time.time() - ms / 1000, lang)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _peer_rows(peers: list[dict[str, Any]], lang: str) -> str:
    _ = i18n.translations(lang).gettext
    rows = []
    for p in peers:
        addresses = ", ".join(f"{a['host']}:{a['port']} ({a['via']})" for a in p["addresses"])
        state = _("syncing") if p["syncing"] else (p["last_error"] or _("ok"))
        rows.append(
            f"<tr class='peer'><td>{_e((p['device_id'] or '?')[:16])}</td>"
            f"<td>{_e(_role(p['role'], _))}</td><td>{_e(addresses)}</td>"
            f"<td>{_ago(p['last_sync_ms'], lang)}</td><td>{_e(p.get('pending', ''))}</td>"
            f"<td>{_n(p['changes_sent'], lang)} / {_n(p['changes_received'], lang)}</td>"
            f"<td>{_e(state)}</td></tr>")
    empty = _("no devices nearby found yet")
    return "".join(rows) or f"<tr><td colspan=7>{_e(empty)}</td></tr>"


def _n(value: Any, lang: str) -> str:
    """A count as the reader writes numbers (``16.417`` in Indonesian)."""
    return i18n.number(value, lang) if isinstance(value, int) else _e(value)


def _progress_rows(rows: dict[str, dict[str, Any]], lang: str) -> str:
    _ = i18n.translations(lang).gettext
    out = []
    for name, row in rows.items():
        status = ", ".join(f"{_e(k)} {_n(v, lang)}" for k, v in row["status"].items())
        out.append(f"<tr><td>{_e(name)}</td><td>{_n(row['records'], lang)}</td>"
                   f"<td>{status}</td><td>{_n(row['conflicts'], lang)}</td></tr>")
    empty = _("no voters yet")
    return "".join(out) or f"<tr><td colspan=4>{_e(empty)}</td></tr>"


def _refused_rows(refused: list[dict[str, Any]], _: Tr) -> str:
    """One row per own change refused upstream: where, stage and the edits' collection,
    key and field names. The reason is left out (a validator's reason may quote a
    field's value: personal data); ``meshsync status`` and ``/api/status`` give it."""
    rows = []
    for r in refused:
        edits = "; ".join(f"{e['collection']}/{e['key']} ({', '.join(e['fields'])})"
                          for e in r["edits"])
        rows.append(f"<tr class='refused'><td>{_e(r['partition'])}</td><td>{r['seq']}</td>"
                    f"<td>{_e(r['at'])}</td><td>{_e(r['stage'])}</td><td>{_e(edits)}</td></tr>")
    return "".join(rows) or f"<tr><td colspan=5>{_e(_('none'))}</td></tr>"


def _date_note(clock: dict[str, Any] | None, _: Tr) -> str:
    """The wrong-date paragraph (``id="date"``), empty while the date is right."""
    if not clock or clock.get("plausible", True):
        return ""
    title = _("The date is wrong.")
    return (f"<p id='date' class='warn'><b>{_e(title)}</b> "
            f"{_e(i18n.localize(clock['message']))}</p>\n")


def _summary(status: dict[str, Any], lang: str, _: Tr) -> str:
    """The first paragraph: the state first, then role, uplink and counts."""
    diag = status["diagnosis"]
    shown = _(DIAGNOSES[diag]) if diag in DIAGNOSES else diag
    uplink = status.get("uplink") or _("none configured")
    return _(
        "State: %(state)s. Role %(role)s, mesh %(mesh)s. Connection to KPU: %(uplink)s. "
        "Changes held: %(changes)s. Open conflicts: %(conflicts)s.") % {
        "state": f'<b id="diagnosis" data-code="{_e(diag)}" class="'
                 f'{"ok" if diag in ("ok", "syncing") else "warn"}">{_e(shown)}</b>',
        "role": f"<b>{_e(_role(status['role'], _))}</b>", "mesh": f"<b>{_e(status['mesh'])}</b>",
        "uplink": _e(uplink), "changes": _n(status["changes"], lang),
        "conflicts": f"<b>{_n(status['conflicts'], lang)}</b>"}


def _headers(_: Tr, *names: str) -> str:
    return "".join(f"<th>{_e(_(name))}</th>" for name in names)


#: Column headings (translated where shown).
PEER_COLUMNS = (N_("device"), N_("role"), N_("addresses"), N_("last sync"), N_("pending"),
                N_("sent / received"), N_("state"))
COUNT_COLUMNS = (N_("voters"), N_("by status"), N_("conflicts"))
REFUSED_COLUMNS = (N_("partition"), N_("change"), N_("refused at"), N_("stage"), N_("edits"))
KAMPUNG_COLUMNS = ("kampung", *COUNT_COLUMNS)  # the domain's words stay: kampung, TPS
TPS_COLUMNS = ("TPS", *COUNT_COLUMNS)


def render_status(status: dict[str, Any], peers: list[dict[str, Any]],
                  progress: dict[str, Any] | None = None, lang: str | None = None) -> str:
    """The whole page as HTML text, in ``lang`` (default: $MESHSYNC_LANG, else id)."""
    lang = lang or i18n.page_lang()
    _ = i18n.translations(lang).gettext
    warnings = "".join(f"<li class='warn'>{_e(i18n.localize(w, lang))}</li>"
                       for w in status["clock_warnings"])
    none = _("none")
    title = _("meshsync device %(id)s") % {"id": status["device_id"][:16]}
    nearby, clock, per_kampung = _("Devices nearby"), _("Clock warnings"), _("Progress per kampung")
    per_tps = _("Progress per TPS")
    refused_title = _("Refused upstream: not safe (the reasons are in meshsync status)")
    legend = _("MS: memenuhi syarat (eligible); TMS: tidak memenuhi syarat (not eligible).")
    return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10"><title>meshsync {_e(status['device_id'][:8])}</title>
<style>{_STYLE}</style></head><body>
<h1>{_e(title)}</h1>
<p>{_summary(status, lang, _)}</p>
<h2>{_e(nearby)}</h2><table id="peers"><tr>{_headers(_, *PEER_COLUMNS)}</tr>
{_peer_rows(peers, lang)}</table>
<h2>{_e(refused_title)}</h2>
<table id="refused"><tr>{_headers(_, *REFUSED_COLUMNS)}</tr>
{_refused_rows((status.get("custody") or {}).get("refused", []), _)}</table>
{_date_note(status.get("clock"), _)}<h2>{_e(clock)}</h2>
<ul>{warnings or f"<li>{_e(none)}</li>"}</ul>
<h2>{_e(per_kampung)}</h2><p>{_e(legend)}</p>
<table id="progress-village"><tr>{_headers(_, *KAMPUNG_COLUMNS)}</tr>
{_progress_rows((progress or {}).get("village", {}), lang)}</table>
<h2>{_e(per_tps)}</h2><table id="progress-tps"><tr>{_headers(_, *TPS_COLUMNS)}</tr>
{_progress_rows((progress or {}).get("tps", {}), lang)}</table>
</body></html>"""
