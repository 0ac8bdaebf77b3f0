"""The progress bar ``meshsync sync`` draws on a terminal while a session runs.

Only when stdout is a terminal and ``--json`` is not given: the line is redrawn in
place (carriage return) at most every :data:`INTERVAL_S` seconds and cleared at the
end, so the one summary line a finished sync prints stays alone. The figures are the
session's (:meth:`meshsync.protocol.events.SessionSummary.progress`): changes received
against what the peer offered, changes sent against what this side had to send, bytes
each way so far.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

import trio

from meshsync.host.i18n import gettext as _
from meshsync.host.i18n import number

#: Seconds between two redraws.
INTERVAL_S = 0.2
#: Characters of the bar itself.
WIDTH = 24


def bar(done: int, total: int | None, width: int = WIDTH) -> str:
    """``[#####-----]`` for ``done`` of ``total`` (all dashes while ``total`` is None
    or 0 with nothing done; full when ``total`` is 0)."""
    if total is None:
        return "[" + "-" * width + "]"
    filled = width if total <= 0 else min(width, width * done // total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _megabytes(n: int) -> str:
    return number(round(n / 1_000_000, 1))


def progress_line(p: dict[str, Any]) -> str:
    """One line of progress from ``SessionSummary.progress()`` (a dict)."""
    offered, got = p["changes_offered"], p["changes_received"]
    if offered is None:
        return _("connected, comparing what each side holds…")
    return _("%(bar)s received %(got)s of %(offered)s changes, sent %(sent)s of "
             "%(to_send)s; %(mb_in)s MB in, %(mb_out)s MB out") % {
        "bar": bar(got, offered), "got": number(min(got, offered)),
        "offered": number(offered), "sent": number(min(p["changes_sent"],
                                                     p["changes_to_send"] or 0)),
        "to_send": number(p["changes_to_send"] or 0),
        "mb_in": _megabytes(p["bytes_received"]), "mb_out": _megabytes(p["bytes_sent"])}


async def draw_progress(read: Callable[[], dict[str, Any] | None], out: TextIO) -> None:
    """Redraw ``read()``'s progress on ``out`` until cancelled; clears the line then."""
    shown = ""
    try:
        while True:
            p = read()
            line = progress_line(p) if p is not None else ""
            if line != shown:
                out.write("\r" + line.ljust(len(shown)))
                out.flush()
                shown = line
            await trio.sleep(INTERVAL_S)
    finally:
        if shown:
            out.write("\r" + " " * len(shown) + "\r")
            out.flush()
