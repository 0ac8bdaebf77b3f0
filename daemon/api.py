"""The local HTTP JSON API and the operator's status page (Starlette on hypercorn/trio).

Listens on loopback only. Every page and route but ``/login`` needs the token kept in
the home (``api.token``, mode 0600) as ``Authorization: Bearer TOKEN`` (Syncthing's
model: any app on the device that can read the home may drive the node), or the
browser session a one-time login link sets; every request must name the API's own
address in ``Host``, and a write from a browser its own origin (:mod:`.guard`). Node
access runs in a worker thread under the node's limiter.

Every answer but the status page is JSON. Errors are ``{"error": MESSAGE}`` (English) plus
``message`` and ``fields`` in the reader's language for an error a person reads
(:func:`for_people`), plus
``field`` (where in the request the bad value is, e.g. ``fields.alamat.rt``) when
one member is at fault and ``limit_bytes`` with 413: 400 bad input (an unknown query
parameter too: ``field`` names it), 401 missing or
wrong token, 403 a write from another origin (``origin``), 421 a foreign ``Host``
(``host``), 404 no such record or path, 405 method not allowed (``Allow`` header),
413 body over :data:`MAX_BODY_BYTES` bytes, 507 storage low (received data refused
below the disk reserve), 500 a storage failure or a bug. Record
values travel in the JSON form of :mod:`meshsync.model.values` (bytes as
``{"$bytes": BASE64}``), the same as ``meshsync get --json``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import trio
from meshsync.daemon.api_i18n import for_people
from meshsync.daemon.events import EventBus
from meshsync.daemon.guard import ApiGuard, HostCheck
from meshsync.daemon.openapi import MAX_BODY_BYTES, OPENAPI, served_openapi
from meshsync.daemon.status_page import render_status
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meshsync.host.home import Home
from meshsync.model.change import check_partition
from meshsync.model.errors import MeshsyncError, NotFoundError, StorageLowError, UsageError
from meshsync.model.text import Msg
from meshsync.model.values import (
    JsonInputError,
    JsonSyntaxError,
    child_path,
    fields_from_json,
    loads_strict,
    record_to_json,
)
from meshsync.store.base import RecordPos

Handler = Callable[[Request], Awaitable[Response]]
#: The status page may not be framed by another page (clickjacking) or run scripts.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "frame-ancestors 'none'",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}
#: The laptop page: its own stylesheet and script only (served from the package under
#: /static), requests and forms to its own origin only, never framed.
LAPTOP_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")}
T = TypeVar("T")
log = logging.getLogger("meshsync.api")


JsonObject = dict[str, object]


class NodeService:
    """What the API needs from the running daemon (implemented by
    :class:`meshsync.daemon.service.LocalNode` and the daemon).

    ``status``, ``peers`` and ``sync_now`` run on the trio thread; every other method
    blocks on the node and runs in a worker thread under :attr:`limiter`. Record
    values are in the library's form (bytes as bytes; :mod:`meshsync.model.values`
    turns them into JSON). Errors are :class:`~meshsync.model.errors.MeshsyncError`.
    """

    limiter: trio.CapacityLimiter
    #: The home: uploads (bundles, voter lists) are spooled in it.
    home: Home
    #: What happens in the daemon, for ``GET /api/events``.
    events: EventBus

    def status(self) -> dict[str, Any]:
        """The status document (see OpenAPI ``Status``)."""
        raise NotImplementedError

    def peers(self) -> list[dict[str, Any]]:
        """The peer table."""
        raise NotImplementedError

    def sync_now(self) -> list[dict[str, Any]]:
        """Mark every peer due for a sync; the peers that cannot be reached
        (``{"device_id", "reason"}``)."""
        raise NotImplementedError

    def list_records(self, collection: str, prefix: str) -> list[JsonObject]:
        """Records of ``collection`` under partition ``prefix`` ("" for all)."""
        raise NotImplementedError

    def records_page(self, collection: str, prefix: str, after: RecordPos | None,
                     limit: int) -> tuple[list[JsonObject], RecordPos | None]:
        """At most ``limit`` live records of ``collection`` under ``prefix`` past
        ``after``, and the position to continue from (None: the last page)."""
        raise NotImplementedError

    def conflicts_page(self, after: RecordPos | None, limit: int
                       ) -> tuple[list[JsonObject], RecordPos | None]:
        """As :meth:`records_page`, of records with open conflicts (every collection)."""
        raise NotImplementedError

    def get_record(self, collection: str, key: str, partition: str | None
                   ) -> JsonObject | None:
        """One record (in ``partition``, else wherever it is), None if absent."""
        raise NotImplementedError

    def put_record(self, collection: str, key: str, fields: dict[str, object],
                   partition: str | None) -> JsonObject:
        """Set ``fields``; ``{"author", "seq", "partition", "hash", "record"}``."""
        raise NotImplementedError

    def delete_record(self, collection: str, key: str, partition: str | None
                      ) -> JsonObject:
        """Delete a record; ``{"author", "seq", "partition", "hash"}``."""
        raise NotImplementedError

    def progress(self, collection: str) -> JsonObject:
        """Progress per TPS and village (:func:`meshsync.replica.progress.progress`)."""
        raise NotImplementedError

    def conflicts(self) -> list[JsonObject]:
        """Records with open conflicts."""
        raise NotImplementedError

    def laptop_facts(self, devices: set[str]) -> JsonObject:
        """What the laptop page reads from the node (:mod:`.laptop_facts`): ``held``
        (custody towards KPU), ``names`` (of ``devices`` and every author held, by
        device id) and ``conflicts``."""
        raise NotImplementedError

    def resolve_conflict(self, collection: str, key: str, partition: str, field: str,
                         author: str, hlc: int) -> JsonObject:
        """Keep the version of ``field`` written by ``author`` at ``hlc`` (one of the
        record's open conflict versions) as the field's value; as :meth:`put_record`.
        ConflictGoneError (409) if the record has no such version open any more."""
        raise NotImplementedError

    def import_bundle(self, source: BinaryIO, name: str) -> JsonObject:
        """Verify and apply the bundle read from ``source`` (called ``name``); the
        import report (``meshsync bundle import --json``)."""
        raise NotImplementedError

    def import_voters(self, path: Path, batch_size: int) -> JsonObject:
        """Import the voter list CSV at ``path`` (``batch_size`` rows per change); the
        report (``meshsync coklit import --json``)."""
        raise NotImplementedError

    def enroll(self, pem: bytes, name: str) -> JsonObject:
        """Install the certificate file ``pem`` (``meshsync enroll``);
        ``{"enrolment": what enroll prints, "warnings": [line, ...]}``."""
        raise NotImplementedError

    def rekey(self, name: str | None) -> JsonObject:
        """Start a key rotation (``meshsync rekey --json``)."""
        raise NotImplementedError

    def add_credentials(self, blobs: list[bytes]) -> JsonObject:
        """Store credentials an authority command made (certificates, revocations,
        schema documents), quarantining what a revocation refuses;
        ``{"added": N new, "held": N already held}``."""
        raise NotImplementedError


_PUT_MEMBERS = ("fields", "partition")

#: (path template, method) -> the query parameters it takes: exactly those the OpenAPI
#: document lists; any other is refused with 400 naming it (a typo such as
#: ``?partiton=`` must not silently widen a listing or write elsewhere).
QUERY_PARAMETERS: dict[tuple[str, str], frozenset[str]] = {
    (path, method.upper()): frozenset(p["name"] for p in operation.get("parameters", [])
                                      if p["in"] == "query")
    for path, methods in OPENAPI["paths"].items() for method, operation in methods.items()
}


def _status_of(exc: MeshsyncError) -> int:
    """404 for NotFoundError, 400 for other UsageErrors (the caller's fault), 507 for
    StorageLowError, else 500."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StorageLowError):
        return 507  # Insufficient Storage (RFC 4918 §11.5): the disk reserve is reached
    return 400 if isinstance(exc, UsageError) else 500


class ApiError(Exception):
    """An answer other than 200: ``status``, the message, and extra members of the
    JSON error (``field``: where in the request; ``limit_bytes`` for 413)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _error(status: int, error: str, headers: Mapping[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    """The JSON error every failing request gets: ``{"error": ERROR, ...extra}``."""
    return JSONResponse({"error": error, **extra}, status_code=status, headers=headers)


def _input_error(exc: JsonInputError) -> ApiError:
    """400 for a refused body, naming the member at fault as ``field``."""
    if isinstance(exc, JsonSyntaxError):
        return ApiError(400, f"request body is {exc.reason}")
    if not exc.where:
        return ApiError(400, f"request body: {exc.reason}")
    return ApiError(400, str(exc), field=exc.where)


async def _read_body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_BODY_BYTES`; ApiError 413 (without reading
    on) past it, 400 for a malformed ``Content-Length``."""
    too_large = ApiError(413, f"request body larger than the limit of {MAX_BODY_BYTES} "
                              "bytes", limit_bytes=MAX_BODY_BYTES)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number of bytes")
        if int(declared) > MAX_BODY_BYTES:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _put_body(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """``(fields, partition)`` of a PUT body ``{"fields": {...}, "partition": P}``, field
    values decoded from their JSON form (:mod:`meshsync.model.values`). ApiError 400
    naming the member at fault otherwise."""
    try:
        body = loads_strict(raw)
        if not isinstance(body, dict):
            raise JsonInputError("", 'must be a JSON object {"fields": {...}, '
                                     '"partition": optional}')
        for name in body:
            if name not in _PUT_MEMBERS:
                raise JsonInputError(child_path("", name), "unknown member (a body has "
                                                           "only fields and partition)")
        fields, partition = body.get("fields"), body.get("partition")
        if not isinstance(fields, dict):
            raise JsonInputError("fields", "missing or not a JSON object of field names "
                                           "to values")
        if not fields:
            raise JsonInputError("fields", "give at least one field")
        if partition is not None:
            if not isinstance(partition, str):
                raise JsonInputError("partition", "must be text (a partition path)")
            try:
                check_partition(partition)
            except UsageError as exc:
                raise JsonInputError("partition", str(exc)) from exc
        return fields_from_json(fields, "fields"), partition
    except JsonInputError as exc:
        raise _input_error(exc) from exc


def _partition(where: str, value: str | None) -> str | None:
    """``value`` if None, empty (none given) or a valid partition path; ApiError 400
    naming ``where`` otherwise."""
    if value:
        try:
            check_partition(value)
        except UsageError as exc:
            raise ApiError(400, f"{where}: {exc}", field=where) from exc
    return value


def _check_query(request: Request, path: str) -> None:
    """ApiError 400 naming the first query parameter the route (``path``, the request's
    method) does not take."""
    method = "GET" if request.method == "HEAD" else request.method
    allowed = QUERY_PARAMETERS.get((path, method), frozenset())
    for name in request.query_params:
        if name in allowed:
            continue
        if method == "PUT" and name == "partition":
            hint = ('a PUT takes its partition in the body: {"fields": {...}, '
                    '"partition": P}')
        else:
            hint = (f"{method} {path} takes "
                    + (", ".join(sorted(allowed)) if allowed else "none"))
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise ApiError(400, f"unknown query parameter {shown!r} ({hint})", field=name)


def _partition_param(request: Request) -> str | None:
    """The ``partition`` query parameter, checked (see :func:`_partition`)."""
    return _partition("partition", request.query_params.get("partition"))


async def in_thread(service: NodeService, func: Callable[[], T]) -> T:
    """Run ``func`` (a node call) in a worker thread under the node's limiter."""
    return await trio.to_thread.run_sync(func, limiter=service.limiter)


def _guarded(guard: ApiGuard, path: str, func: Handler) -> Handler:
    """``func`` behind the guard (credentials, Origin for writes) and the query check
    for route ``path``, its failures turned into the API's JSON errors."""
    async def wrapper(request: Request) -> Response:
        refused = guard.request_refusal(request)
        if refused is not None:
            return refused
        try:
            _check_query(request, path)
            return await func(request)
        except MeshsyncError as exc:
            return _error(_status_of(exc), str(exc), **for_people(exc, request))
        except ApiError as exc:
            close = {"Connection": "close"} if exc.status == 413 else None
            return _error(exc.status, str(exc), close, **exc.extra)
        except Exception as exc:  # a bug: keep serving, log it, say what happened
            log.exception("API %s %s failed", request.method, request.url.path)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")
    return wrapper


def build_app(service: NodeService, token: str) -> Starlette:
    """The ASGI application; its :class:`~.guard.ApiGuard` is ``app.state.guard``
    (:func:`serve_api` tells it the bound address)."""
    from meshsync.daemon.api_events import event_routes  # they import this module
    from meshsync.daemon.api_lists import list_routes
    from meshsync.daemon.api_resolve import resolve_routes
    from meshsync.daemon.api_writes import write_routes
    from meshsync.daemon.app_routes import app_routes
    from meshsync.daemon.kpu_page import kpu_routes
    from meshsync.daemon.static_files import static_routes

    guard = ApiGuard(token)
    guarded = partial(_guarded, guard)

    def call(func: Callable[[], T]) -> Awaitable[T]:
        return in_thread(service, func)

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def peers(request: Request) -> Response:
        return JSONResponse(service.peers())

    async def record(request: Request) -> Response:
        if request.method == "PUT":
            return await put_record(request)
        if request.method == "DELETE":
            return await delete_record(request)
        p = request.path_params
        found = await call(partial(service.get_record, p["collection"], p["key"],
                                   _partition_param(request)))
        if found is None:
            raise NotFoundError(Msg("no record %(collection)s/%(key)s", collection=p["collection"],
                                    key=p["key"]))
        return JSONResponse(record_to_json(found))

    async def put_record(request: Request) -> Response:
        p = request.path_params
        fields, partition = _put_body(await _read_body(request))
        result = await call(partial(service.put_record, p["collection"], p["key"], fields,
                                    partition))
        service.sync_now()
        stored = result.get("record")
        if isinstance(stored, dict):
            result = {**result, "record": record_to_json(stored)}
        return JSONResponse(result, status_code=200)

    async def delete_record(request: Request) -> Response:
        p = request.path_params
        result = await call(partial(service.delete_record, p["collection"], p["key"],
                                    _partition_param(request)))
        service.sync_now()
        return JSONResponse(result)

    async def progress_route(request: Request) -> Response:
        collection = request.query_params.get("collection", "voters")
        return JSONResponse(await call(partial(service.progress, collection)))

    async def sync(request: Request) -> Response:
        unreachable = service.sync_now()
        return JSONResponse({"ok": not unreachable, "peers": len(service.peers()),
                             "unreachable": unreachable}, status_code=202)

    async def openapi(request: Request) -> Response:
        return JSONResponse(served_openapi(guard.cookie_name))

    async def page(request: Request) -> Response:
        status, peers = service.status(), service.peers()
        progress = await call(partial(service.progress, "voters"))
        if status.get("role") in ("central", "pantarlih"):  # a phone's officer uses /app
            return HTMLResponse(render_status(status, peers, progress), headers=PAGE_HEADERS)
        from meshsync.daemon.laptop_page import render_laptop

        devices = {p["device_id"] for p in peers if p.get("device_id")}
        facts = await call(partial(service.laptop_facts, devices))
        # tens of milliseconds for hundreds of TPS: off the event loop (no node access)
        html = await trio.to_thread.run_sync(render_laptop, status, peers, progress, facts)
        return HTMLResponse(html, headers=LAPTOP_HEADERS)

    routes = [
        Route("/login", guard.login),
        Route("/", guarded("/", page)),
        Route("/api/openapi.json", guarded("/api/openapi.json", openapi)),
        Route("/api/login-links", guarded("/api/login-links", guard.login_link),
              methods=["POST"]),
        Route("/api/status", guarded("/api/status", status)),
        Route("/api/peers", guarded("/api/peers", peers)),
        *[Route(path, guarded(path, handler))
          for path, handler in {**list_routes(service), **event_routes(service)}.items()],
        Route("/api/records/{collection}/{key}",
              guarded("/api/records/{collection}/{key}", record),
              methods=["GET", "PUT", "DELETE"]),
        Route("/api/progress", guarded("/api/progress", progress_route)),
        *[Route(path, guarded(path.replace(":path}", "}"), handler))
          for path, handler in {**kpu_routes(service), **static_routes()}.items()],
        Route("/api/sync", guarded("/api/sync", sync), methods=["POST"]),
        *[Route(path, guarded(path, handler), methods=["POST"])
          for path, handler in {**write_routes(service), **resolve_routes(service)}.items()],
        *app_routes(service, guard),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(HostCheck, guard=guard)],
                    exception_handlers={HTTPException: _http_error,
                                        Exception: _server_error})
    app.state.guard = guard
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """404 (no route) and 405 (method not allowed) in the API's JSON error shape."""
    assert isinstance(exc, HTTPException)
    path = request.url.path  # percent-decoded: shown as repr, cut, on one line
    path = repr(path if len(path) <= 80 else path[:80] + "…")
    if exc.status_code == 404:
        return _error(404, f"no such path {path} (the API is described at "
                           "/api/openapi.json)")
    if exc.status_code == 405:
        allowed = sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(","))
        return _error(405, f"method {request.method} not allowed on {path} (allowed: "
                           f"{', '.join(allowed)})", {"Allow": ", ".join(allowed)})
    return _error(exc.status_code, exc.detail, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    """A failure outside the guarded routes (the status page): JSON, never a traceback."""
    log.error("API %s %s failed: %s: %s", request.method, request.url.path,
              type(exc).__name__, exc)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


async def serve_api(app: Starlette, host: str, port: int, *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
    """Serve ``app`` on ``host:port`` with hypercorn until cancelled.

    ``task_status.started(binds)`` once bound: ``["http://HOST:PORT"]`` with the port
    the kernel picked when ``port`` is 0."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    started = _Started(app.state.guard, task_status)
    await serve(app, config, task_status=started)  # type: ignore[arg-type]


class _Started:
    """hypercorn's ``task_status``: tells the guard the bound address (before the first
    request is accepted), then the caller."""

    def __init__(self, guard: ApiGuard, task_status: trio.TaskStatus[list[str]]) -> None:
        self.guard, self.task_status = guard, task_status

    def started(self, binds: list[str]) -> None:
        """Called once hypercorn is bound, with ``["http://HOST:PORT"]``."""
        self.guard.listen_on(binds)
        self.task_status.started(binds)
