"""``POST /api/conflicts/resolve``: keep one of a field's conflicting entries.

The laptop page's conflict forms post here (``application/x-www-form-urlencoded``,
same origin, the browser session: :mod:`.guard` checks both), and so may an app with
the token (JSON). Members: ``collection``, ``key``, ``partition``, ``field`` and the
chosen version's ``author`` (device id) and ``hlc`` (as listed in a record's
``conflicts``). The chosen value is written as a new edit of that field (which
supersedes every entry it saw: the conflict closes on every device that receives it).
A form gets ``303 See Other`` back to the page; JSON gets the write's result as
``PUT /api/records/...`` does, or 409 when that entry is no longer open.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs

from meshsync.daemon.api import ApiError, Handler, NodeService, _partition, _read_body, in_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from meshsync.model.errors import MeshsyncError
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
            if form:  # the page shows what is open now
                return RedirectResponse("/#conflicts", status_code=303)
            raise ApiError(409, str(exc)) from exc
        service.sync_now()
        if form:
            return RedirectResponse("/#conflicts", status_code=303)
        stored = result.get("record")
        if isinstance(stored, dict):
            result = {**result, "record": record_to_json(stored)}
        return JSONResponse(result)

    return {"/api/conflicts/resolve": resolve}
