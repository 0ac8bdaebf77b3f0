"""The officer's app under ``/app``: server-rendered pages for the phone (docs/app.md).

Behind the API's guard (:mod:`.guard`): the same token or login session, the same
``Host`` rule, and a form's POST must carry the app's own ``Origin`` (so the pages
are sent with ``Referrer-Policy: same-origin``: ``no-referrer`` would make a browser
send ``Origin: null``). Pages speak the pages' language (:func:`meshsync.host.i18n.page_lang`,
Indonesian by default) and load nothing from outside the package: templates in
``daemon/templates/app/``, assets in ``daemon/static/app/``.

Routes (``TPS`` is a partition path, ``KEY`` a voter's key):

* ``GET /app``: sync state and the TPS list, "dicoklit X dari Y", unfinished first;
* ``GET /app/tps/TPS``: its voters, belum dicoklit first;
* ``GET /app/cari?q=``: search by name or NIK/NKK (``&frag=1``: the results only,
  for the page's script);
* ``GET /app/pemilih/KEY?tps=TPS``: the voter card with this phone's edits of it and
  where each is safe; ``POST …/coklit`` (``hasil`` MS or TMS, ``tms`` reason);
  ``GET``/``POST …/ubah`` (edit fields);
* ``GET``/``POST /app/baru?tps=TPS``: a new voter (pemilih baru);
* ``GET /app/catatan``: this phone's edits and their custody;
* ``GET /app/manifest.webmanifest``, ``GET /app/static/NAME``: install and assets.

A refused edit re-renders its form with 400 and each validator message on its field,
in the reader's language; nothing is stored.
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from meshsync.daemon.api import ApiError, _read_body, in_thread
from meshsync.daemon.app_data import FORM_FIELDS, LABELS, AppData, codes
from meshsync.daemon.app_state import sync_state
from meshsync.daemon.guard import ApiGuard
from meshsync.daemon.service import LocalNode
from meshsync.daemon.templating import STATIC, render
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from meshsync.host import i18n
from meshsync.model.errors import MeshsyncError, NotFoundError, ValidationError
from meshsync.model.text import Msg

T = TypeVar("T")
Page = Callable[[Request], Awaitable[Response]]
APP_STATIC = STATIC / "app"
#: Scripts and styles from the app's own origin only; no framing, no other targets.
APP_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
mimetypes.add_type("application/manifest+json", ".webmanifest")


def _form(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as name -> last value."""
    return dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"),
                                       keep_blank_values=True))


def form_fields(form: dict[str, str], record: dict[str, Any] | None) -> dict[str, Any]:
    """The edited fields of ``form`` (trimmed; blank optional ones cleared): only those
    that differ from ``record``'s (all given ones for a new voter)."""
    out: dict[str, Any] = {}
    for name, _kind in FORM_FIELDS:
        if name not in form:
            continue
        value: Any = form[name].strip() or None
        if record is None and value is None:
            continue
        if record is None or value != record.get(name):
            out[name] = value
    return out


class AppPages:
    """The handlers; ``lang``: the pages' language."""

    def __init__(self, service: LocalNode, guard: ApiGuard, lang: str) -> None:
        self.service, self.guard, self.lang = service, guard, lang
        self.data = AppData(service)

    def call(self, func: Callable[[], T]) -> Awaitable[T]:
        """Run a node call in a worker thread under the node's limiter."""
        return in_thread(self.service, func)

    def html(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Template ``app/NAME`` rendered as a page of the app."""
        text = render(f"app/{name}", self.lang, codes=codes(), labels=LABELS,
                      form_fields=FORM_FIELDS, **context)
        return HTMLResponse(text, status_code=status, headers=APP_HEADERS)

    def guarded(self, page: Page) -> Page:
        """``page`` behind the guard; a node error shown as an error page."""
        async def wrapper(request: Request) -> Response:
            refused = self.guard.request_refusal(request)
            if refused is not None and refused.status_code == 401 \
                    and "text/html" in request.headers.get("accept", ""):
                message = i18n.translations(self.lang).gettext(
                    "Not logged in: open the app again from the phone, or run `meshsync "
                    "login` for a login link.")
                return self.html("error.html", 401, message=message)
            if refused is not None:
                return refused
            try:
                return await page(request)
            except ApiError as exc:
                return self.html("error.html", exc.status, message=str(exc))
            except MeshsyncError as exc:
                status = 404 if isinstance(exc, NotFoundError) else 400
                return self.html("error.html", status, message=i18n.describe(exc, self.lang))
        return wrapper

    # -- reading ----------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """The TPS list and the sync state."""
        rows = await self.call(self.data.tps_list)
        edits = await self.call(self.data.edits)
        return self.html("home.html", rows=rows, own=self.data.own_partition(),
                         state=sync_state(self.service, [e for e, _name in edits]))

    async def search(self, request: Request) -> Response:
        """Search results (the whole page, or ``frag=1``: the list only)."""
        query = request.query_params.get("q", "")[:100]
        found = await self.call(partial(self.data.search, query)) if query.strip() else []
        name = "results.html" if request.query_params.get("frag") else "search.html"
        return self.html(name, query=query, found=found)

    async def tps(self, request: Request) -> Response:
        """One TPS's voters."""
        partition = request.path_params["partition"]
        voters = await self.call(partial(self.data.tps, partition))
        if not voters:
            raise NotFoundError(Msg("no voters in %(partition)s", partition=partition))
        return self.html("tps.html", partition=partition, voters=voters,
                         done=sum(v.done for v in voters))

    async def card(self, request: Request) -> Response:
        """The voter card."""
        key, partition = request.path_params["key"], request.query_params.get("tps", "")
        record, edits = await self.call(partial(self.data.card, key, partition))
        if record is None or record.deleted:
            raise NotFoundError(Msg("no voter %(key)s", key=key))
        return self.html("card.html", record=record, edits=edits, errors={},
                         saved=request.query_params.get("ok") == "1")

    async def edits(self, request: Request) -> Response:
        """This phone's edits and their custody."""
        return self.html("edits.html", edits=await self.call(self.data.edits))

    # -- writing ----------------------------------------------------------------------

    async def coklit(self, request: Request) -> Response:
        """Record MS or TMS (with a reason) on a voter."""
        key = request.path_params["key"]
        form = _form(await _read_body(request))
        partition, result = form.get("tps", ""), form.get("hasil")
        if result == "MS":
            fields: dict[str, Any] = {"coklit": "MS", "tms": None}
        elif result == "TMS":
            fields = {"coklit": "TMS", "tms": form.get("tms") or None}
        else:
            raise ApiError(400, i18n.translations(self.lang).gettext(
                "Choose MS or TMS."))
        record, edits = await self.call(partial(self.data.card, key, partition))
        if record is None or record.deleted:  # a result is for a voter on the list only
            raise NotFoundError(Msg("no voter %(key)s", key=key))
        try:
            await self.call(partial(self.data.save, key, partition, fields))
        except ValidationError as exc:
            return self.html("card.html", 400, record=record, edits=edits, saved=False,
                             errors=self.messages(exc))
        self.service.sync_now()
        return self._to_card(key, partition)

    async def edit(self, request: Request) -> Response:
        """The ubah form (GET) and its save (POST)."""
        key, partition = request.path_params["key"], request.query_params.get("tps", "")
        record, _edits = await self.call(partial(self.data.card, key, partition))
        if record is None or record.deleted:
            raise NotFoundError(Msg("no voter %(key)s", key=key))
        if request.method == "GET":
            return self.html("form.html", record=record, values=record.fields, errors={},
                             partition=record.partition)
        form = _form(await _read_body(request))
        fields = form_fields(form, record.fields)
        if not fields:
            return self._to_card(key, record.partition)
        try:
            await self.call(partial(self.data.save, key, record.partition,
                                    {**fields, "coklit": "ubah", "tms": None}))
        except ValidationError as exc:
            return self.html("form.html", 400, record=record, values=form,
                             errors=self.messages(exc), partition=record.partition)
        self.service.sync_now()
        return self._to_card(key, record.partition)

    async def new(self, request: Request) -> Response:
        """The pemilih baru form (GET) and its save (POST)."""
        partition = request.query_params.get("tps", "") or self.data.own_partition()
        if not await self.call(partial(self.data.tps, partition)):
            # a new voter takes its region from a voter of the TPS: none, no TPS here
            raise NotFoundError(Msg("no voters in %(partition)s", partition=partition))
        if request.method == "GET":
            return self.html("form.html", record=None, values={}, errors={},
                             partition=partition)
        form = _form(await _read_body(request))
        try:
            key, _result = await self.call(partial(self.data.new_voter, partition,
                                                   form_fields(form, None)))
        except ValidationError as exc:
            return self.html("form.html", 400, record=None, values=form,
                             errors=self.messages(exc), partition=partition)
        self.service.sync_now()
        return self._to_card(key, partition)

    def messages(self, exc: ValidationError) -> dict[str, str]:
        """``field -> message`` of a refusal, in the page's language."""
        out: dict[str, str] = {}
        for name, message in exc.errors:
            out.setdefault(name or "", i18n.localize(message, self.lang))
        return out

    def _to_card(self, key: str, partition: str) -> Response:
        where = urllib.parse.urlencode({"tps": partition, "ok": "1"})
        return RedirectResponse(f"/app/pemilih/{urllib.parse.quote(key)}?{where}", 303,
                                headers=APP_HEADERS)

    # -- install and assets -----------------------------------------------------------

    async def manifest(self, request: Request) -> Response:
        """The web app manifest."""
        text = render("app/manifest.webmanifest", self.lang)
        return Response(text, media_type="application/manifest+json",
                        headers={"Cache-Control": "no-cache"})

    async def static(self, request: Request) -> Response:
        """A file of ``daemon/static/app`` (no folders, nothing else)."""
        from meshsync.daemon.static_files import HEADERS, TYPES, static_file

        path = static_file(APP_STATIC, request.path_params["name"])  # 404 outside it
        return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


def app_routes(service: object, guard: ApiGuard) -> list[Route]:
    """The ``/app`` routes for :func:`meshsync.daemon.api.build_app` (none unless the
    service is a running node: :class:`LocalNode`)."""
    if not isinstance(service, LocalNode):
        return []
    pages = AppPages(service, guard, i18n.page_lang(service.home.config().get("lang")))
    g = pages.guarded
    return [
        Route("/app", g(pages.home)), Route("/app/", g(pages.home)),
        Route("/app/cari", g(pages.search)),
        Route("/app/tps/{partition:path}", g(pages.tps)),
        Route("/app/pemilih/{key}", g(pages.card)),
        Route("/app/pemilih/{key}/coklit", g(pages.coklit), methods=["POST"]),
        Route("/app/pemilih/{key}/ubah", g(pages.edit), methods=["GET", "POST"]),
        Route("/app/baru", g(pages.new), methods=["GET", "POST"]),
        Route("/app/catatan", g(pages.edits)),
        Route("/app/manifest.webmanifest", g(pages.manifest)),
        Route("/app/static/{name}", g(pages.static)),
    ]


__all__ = ["APP_HEADERS", "AppPages", "app_routes", "form_fields"]
