"""``POST /api/conflicts/resolve``: keep one of a field's conflicting entries.

The laptop page's conflict forms post here (``application/x-www-form-urlencoded``,
same origin, the browser session: :mod:`.guard` checks both), and so may an app with
the token (JSON). Members: ``collection``, ``key``, ``partition``, ``field`` and the
chosen version's ``author`` (device id) and ``hlc`` (as listed in a record's
``conflicts``). The chosen value is written as a new edit of that field (which
supersedes every entry it saw: the conflict closes on every device that receives it).
A form gets ``303 See Other`` back to the page, or a page in the reader's language
saying why nothing was written (409: that entry is no longer open; 400: the record
would not pass its schema with that value); JSON gets the write's result as
``PUT /api/records/...`` does, or those errors as JSON.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs

from meshsync.daemon.api import ApiError, Handler, NodeService, _partition, _read_body, in_thread
from meshsync.daemon.api_i18n import reader_lang
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from meshsync.host import i18n
from meshsync.model.errors import MeshsyncError
from meshsync.model.text import N_
from meshsync.model.values import JsonInputError, loads_strict, record_to_json

#: The members a resolve request carries, all required.
MEMBERS = ("collection", "key", "partition", "field", "author", "hlc")
FORM = "application/x-www-form-urlencoded"


class ConflictGoneError(MeshsyncError):
    """The entry to keep is no longer an open conflict version (answered with 409)."""


def _members(raw: bytes, form: bool) -> dict[str, str]:
    """The request's members as text; ApiError 400 naming the first missing or bad."""
    if form:
        parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        body: object = {k: v[0] for k, v in parsed.items()}
    else:
        try:
            body = loads_strict(raw)
        except JsonInputError as exc:
            raise ApiError(400, f"request body: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be an object of " + ", ".join(MEMBERS))
    for name in body:
        if name not in MEMBERS:
            raise ApiError(400, f"unknown member {str(name)[:40]!r}", field=str(name)[:40])
    out = {}
    for name in MEMBERS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and name == "hlc":
            value = str(value)
        if not isinstance(value, str) or (not value and name != "partition"):
            raise ApiError(400, f"{name} is missing or not text", field=name)
        out[name] = value
    if not out["hlc"].isdigit():
        raise ApiError(400, "hlc must be a whole number (as listed in conflicts)", field="hlc")
    _partition("partition", out["partition"])
    return out


def _refused_page(request: Request, status: int, title: str, detail: str) -> Response:
    """A short page saying why a conflict form wrote nothing, in the reader's language."""
    from meshsync.daemon.templating import render

    lang = reader_lang(request)
    tr = i18n.translations(lang).gettext
    html = render("laptop/message.html", lang, title=tr(title), detail=tr(detail))
    return HTMLResponse(html, status_code=status)


def resolve_routes(service: NodeService) -> dict[str, Handler]:
    """``path -> handler`` of the route above, for :func:`.api.build_app`."""

    async def resolve(request: Request) -> Response:
        raw = await _read_body(request)
        # A JSON object is JSON whatever the type says (urllib, curl -d send a form's).
        form = (request.headers.get("content-type", "").split(";")[0].strip() == FORM
                and not raw.lstrip().startswith(b"{"))
        m = _members(raw, form)
        try:
            result = await in_thread(service, partial(
                service.resolve_conflict, m["collection"], m["key"], m["partition"],
                m["field"], m["author"], int(m["hlc"])))
        except ConflictGoneError as exc:
            if form:
                return _refused_page(request, 409, N_("That entry is no longer in conflict"),
                                     N_("It was settled already (on this page or on another "
                                        "device): nothing was written. The page shows what "
                                        "is still open."))
            raise ApiError(409, str(exc)) from exc
        except MeshsyncError as exc:
            if form:  # a browser gets a page, not JSON
                return _refused_page(request, 400, N_("This entry cannot be kept"),
                                     i18n.describe(exc, reader_lang(request)))
            raise
        service.sync_now()
        if form:
            return RedirectResponse("/#conflicts", status_code=303)
        stored = result.get("record")
        if isinstance(stored, dict):
            result = {**result, "record": record_to_json(stored)}
        return JSONResponse(result)

    return {"/api/conflicts/resolve": resolve}
