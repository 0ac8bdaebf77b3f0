"""The KPU page at central (docs/architecture.md §9): coklit progress per distrik, then
per kampung of a distrik, then per TPS of a kampung, with totals at each level.

Routes (guarded like the API: token or login session, own ``Host``):

* ``GET /kpu``, ``/kpu/{distrik}``, ``/kpu/{distrik}/{kampung}``: HTML (Jinja2,
  ``templates/kpu/``), sortable by ``?sort=`` (:data:`.kpu_data.SORT_KEYS`) and
  ``?order=asc|desc``; ``?days=N`` sets how many days without a result make a TPS
  idle (highlighted; default: ``kpu_idle_days`` of the daemon's config, else
  :data:`.kpu_data.DEFAULT_IDLE_DAYS`).
* ``GET /kpu/export.csv``: one line per TPS (:data:`.kpu_data.CSV_COLUMNS`), streamed.

The figures come from the progress counts the store keeps on write
(:func:`meshsync.replica.progress.progress`), so a page costs a read of a few rows per
TPS, not of every voter. Last contact with each gateway comes from the peer table.
The page holds no personal data: counts and region names only.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

from meshsync.daemon.api import ApiError, Handler, NodeService, in_thread
from meshsync.daemon.kpu_data import (
    CSV_COLUMNS,
    DEFAULT_IDLE_DAYS,
    MAX_IDLE_DAYS,
    SORT_KEYS,
    Area,
    csv_rows,
    find,
    ordered,
    total,
    tree,
)
from meshsync.daemon.templating import render
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from meshsync.host import i18n

#: The KPU page may load its own stylesheet, nothing else; no frames, no scripts.
KPU_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'; "
                                          "frame-ancestors 'none'",
               "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
               "Cache-Control": "no-store"}

#: Level of the rows shown -> the word heading the name column (the domain's words).
LEVELS = ("distrik", "kampung", "TPS")


def _days(request: Request, default: int) -> int:
    text = request.query_params.get("days", str(default))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_IDLE_DAYS:
        raise ApiError(400, f"days must be a whole number from 1 to {MAX_IDLE_DAYS}",
                       field="days")
    return int(text)


def _sort(request: Request) -> tuple[str, bool]:
    sort = request.query_params.get("sort", "nama")
    if sort not in SORT_KEYS:
        raise ApiError(400, f"sort must be one of {', '.join(SORT_KEYS)}", field="sort")
    order = request.query_params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "order must be asc or desc", field="order")
    return sort, order == "desc"


def _gateways(peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateways in the peer table, most recently synced first."""
    found = [p for p in peers if p.get("role") == "gateway"]
    return sorted(found, key=lambda p: -(p.get("last_sync_ms") or 0))


def _scope(districts: list[Area], path: list[str]) -> tuple[list[Area], list[Area]]:
    """(breadcrumb areas, rows shown) for ``path`` = [] | [distrik] | [distrik, kampung];
    404 for a name not found."""
    trail: list[Area] = []
    rows = districts
    for name in path:
        area = find(rows, name)
        if area is None:
            raise ApiError(404, f"no {LEVELS[len(trail)]} {name!r} at central")
        trail.append(area)
        rows = area.children
    return trail, rows


def page_context(progress: dict[str, Any], peers: list[dict[str, Any]], path: list[str],
                 *, now_ms: int, days: int, sort: str, descending: bool) -> dict[str, Any]:
    """Everything the template shows (see ``templates/kpu/page.html``)."""
    districts = tree(progress, now_ms, days)
    trail, rows = _scope(districts, path)
    scope = trail[-1] if trail else total(districts, "", "")
    return {"trail": trail, "rows": ordered(rows, sort, descending), "scope": scope,
            "level": LEVELS[len(path)], "here": "/".join(["/kpu", *path]),
            "sort": sort, "descending": descending, "days": days, "now_ms": now_ms,
            "sort_keys": SORT_KEYS, "gateways": _gateways(peers),
            "total": total(rows, scope.key, scope.name)}


def _csv_lines(districts: list[Area]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for i, row in enumerate(csv_rows(districts), 1):
        writer.writerow(row)
        if i % 200 == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def kpu_routes(service: NodeService) -> dict[str, Handler]:
    """The KPU routes (path -> handler), to be guarded by :mod:`.api`."""
    # The daemon's config.toml may set kpu_idle_days (meshsync.daemon.config).
    idle_days = int(getattr(getattr(service, "config", None), "kpu_idle_days",
                            DEFAULT_IDLE_DAYS))

    async def figures() -> dict[str, Any]:
        return await in_thread(service, partial(service.progress, "voters"))

    def at_central() -> None:
        if service.status().get("role") != "central":
            raise ApiError(404, "the KPU page is served by central (role central) only")

    async def show(request: Request, path: list[str]) -> Response:
        at_central()
        days, (sort, descending) = _days(request, idle_days), _sort(request)
        lang = i18n.page_lang()
        context = page_context(await figures(), service.peers(), path,
                               now_ms=int(time.time() * 1000), days=days, sort=sort,
                               descending=descending)
        return HTMLResponse(render("kpu/page.html", lang, **context), headers=KPU_HEADERS)

    async def top(request: Request) -> Response:
        return await show(request, [])

    async def district(request: Request) -> Response:
        return await show(request, [request.path_params["distrik"]])

    async def village(request: Request) -> Response:
        p = request.path_params
        return await show(request, [p["distrik"], p["kampung"]])

    async def export(request: Request) -> Response:
        at_central()
        days = _days(request, idle_days)
        districts = tree(await figures(), int(time.time() * 1000), days)
        return StreamingResponse(_csv_lines(districts), media_type="text/csv; charset=utf-8",
                                 headers={**KPU_HEADERS, "Content-Disposition":
                                          'attachment; filename="coklit-per-tps.csv"'})

    return {"/kpu": top, "/kpu/export.csv": export, "/kpu/{distrik}": district,
            "/kpu/{distrik}/{kampung}": village}
