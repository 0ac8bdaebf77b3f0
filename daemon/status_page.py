"""The operator's status page: plain server-rendered HTML, no scripts, no personal data."""

from __future__ import annotations

import html
import time
from typing import Any

_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#eee}.warn{color:#a40}.ok{color:#070}
"""


def _ago(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = max(0, int(time.time() - ms / 1000))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _peer_rows(peers: list[dict[str, Any]]) -> str:
    rows = []
    for p in peers:
        addresses = ", ".join(f"{a['host']}:{a['port']} ({a['via']})" for a in p["addresses"])
        state = "syncing" if p["syncing"] else (p["last_error"] or "ok")
        rows.append(
            f"<tr class='peer'><td>{_e((p['device_id'] or '?')[:16])}</td>"
            f"<td>{_e(p['role'] or '')}</td><td>{_e(addresses)}</td>"
            f"<td>{_ago(p['last_sync_ms'])}</td><td>{_e(p.get('pending', ''))}</td>"
            f"<td>{p['changes_sent']} / {p['changes_received']}</td><td>{_e(state)}</td></tr>")
    return "".join(rows) or "<tr><td colspan=7>no peers found yet</td></tr>"


def _progress_rows(rows: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, row in rows.items():
        status = ", ".join(f"{_e(k)} {v}" for k, v in row["status"].items())
        out.append(f"<tr><td>{_e(name)}</td><td>{row['records']}</td><td>{status}</td>"
                   f"<td>{row['conflicts']}</td></tr>")
    return "".join(out) or "<tr><td colspan=4>no records</td></tr>"


def _refused_rows(refused: list[dict[str, Any]]) -> str:
    """One row per own change refused upstream: where, stage and the edits' collection,
    key and field names. The reason is left out (a validator's reason may quote a
    field's value: personal data); ``meshsync status`` and ``/api/status`` give it."""
    rows = []
    for r in refused:
        edits = "; ".join(f"{e['collection']}/{e['key']} ({', '.join(e['fields'])})"
                          for e in r["edits"])
        rows.append(f"<tr class='refused'><td>{_e(r['partition'])}</td><td>{r['seq']}</td>"
                    f"<td>{_e(r['at'])}</td><td>{_e(r['stage'])}</td><td>{_e(edits)}</td></tr>")
    return "".join(rows) or "<tr><td colspan=5>none</td></tr>"


def _date_note(clock: dict[str, Any] | None) -> str:
    """The wrong-date paragraph (``id="date"``), empty while the date is right."""
    if not clock or clock.get("plausible", True):
        return ""
    return f"<p id='date' class='warn'><b>Wrong date.</b> {_e(clock['message'])}</p>\n"


def render_status(status: dict[str, Any], peers: list[dict[str, Any]],
                  progress: dict[str, Any] | None = None) -> str:
    """The whole page as HTML text."""
    warnings = "".join(f"<li class='warn'>{_e(w)}</li>" for w in status["clock_warnings"])
    uplink = status.get("uplink") or "none configured"
    diag = status["diagnosis"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10"><title>meshsync {_e(status['device_id'][:8])}</title>
<style>{_STYLE}</style></head><body>
<h1>meshsync node {_e(status['device_id'][:16])}</h1>
<p>Role <b>{_e(status['role'])}</b>, mesh <b>{_e(status['mesh'])}</b>, state
<b id="diagnosis" class="{'ok' if diag in ('ok', 'syncing') else 'warn'}">{_e(diag)}</b>.
Uplink: {_e(uplink)}. Changes held: {status['changes']}. Open conflicts:
<b>{status['conflicts']}</b>.</p>
<h2>Peers</h2><table id="peers"><tr><th>device</th><th>role</th><th>addresses</th>
<th>last sync</th><th>pending</th><th>sent / received</th><th>state</th></tr>
{_peer_rows(peers)}</table>
<h2>Refused upstream (not safe; reasons in <code>meshsync status</code>)</h2>
<table id="refused"><tr><th>partition</th><th>change</th><th>refused at</th><th>stage</th>
<th>edits</th></tr>
{_refused_rows((status.get("custody") or {}).get("refused", []))}</table>
{_date_note(status.get("clock"))}<h2>Clock warnings</h2><ul>{warnings or '<li>none</li>'}</ul>
<h2>Progress per village</h2><table id="progress-village"><tr><th>village</th>
<th>voters</th><th>by status</th><th>conflicts</th></tr>
{_progress_rows((progress or {}).get("village", {}))}</table>
<h2>Progress per TPS</h2><table id="progress-tps"><tr><th>TPS</th><th>voters</th>
<th>by status</th><th>conflicts</th></tr>
{_progress_rows((progress or {}).get("tps", {}))}</table>
</body></html>"""
