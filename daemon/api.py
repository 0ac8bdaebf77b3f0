"""The local HTTP JSON API and the operator's status page (Starlette on hypercorn/trio).

Listens on loopback only. Every ``/api/*`` route except ``/api/openapi.json`` needs the
token kept in the home (``api.token``, mode 0600) as ``Authorization: Bearer TOKEN``
(Syncthing's model: any app on the device that can read the home may drive the
node). The status page ``/`` shows no personal data (peers, counts, warnings), so it
needs no token. Node access runs in a worker thread under the node's limiter.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from meshsync.daemon.openapi import OPENAPI
from meshsync.daemon.status_page import render_status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meshsync.errors import MeshsyncError, NotFoundError, UsageError

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("meshsync.api")


class NodeService:
    """What the API needs from the running daemon (implemented by ``Daemon``)."""

    limiter: trio.CapacityLimiter

    def status(self) -> dict[str, Any]:
        """The status document (see OpenAPI ``Status``)."""
        raise NotImplementedError

    def peers(self) -> list[dict[str, Any]]:
        """The peer table."""
        raise NotImplementedError

    def node_call(self, name: str, *args: Any) -> Any:
        """Call a node method by name (runs in a worker thread)."""
        raise NotImplementedError

    def sync_now(self) -> None:
        """Mark every peer due for a sync."""
        raise NotImplementedError


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a float")
    return value


def _strict_json(raw: bytes) -> Any:
    """Parse a request body as RFC 8259 JSON; UsageError (400) otherwise.

    Python's json accepts NaN and Infinity (and turns 1e999 into inf): stored, such a
    value would make every later JSON response listing the record fail, here and on
    every peer it syncs to. Deep nesting would raise RecursionError (a 500).
    """
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise UsageError(f"request body is not JSON: {exc.msg}") from exc
    except ValueError as exc:  # includes UnicodeDecodeError
        raise UsageError(f"request body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError("request body is not JSON this API accepts: nested too deeply") \
            from exc


def build_app(service: NodeService, token: str) -> Starlette:
    """The ASGI application."""

    def guarded(func: Handler) -> Handler:
        async def wrapper(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            given = header.removeprefix("Bearer ").strip()
            if not given or not hmac.compare_digest(given, token):
                return _error(401, "missing or wrong API token (see api.token in the home)")
            try:
                return await func(request)
            except NotFoundError as exc:
                return _error(404, str(exc))
            except UsageError as exc:
                return _error(400, str(exc))
            except MeshsyncError as exc:
                return _error(500, str(exc))
            except Exception as exc:  # a bug: keep serving, log it, say what happened
                log.exception("API %s %s failed", request.method, request.url.path)
                return _error(500, f"internal error: {type(exc).__name__}: {exc}")
        return wrapper

    async def call(name: str, *args: Any) -> Any:
        return await trio.to_thread.run_sync(service.node_call, name, *args,
                                             limiter=service.limiter)

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def peers(request: Request) -> Response:
        return JSONResponse(service.peers())

    async def list_records(request: Request) -> Response:
        collection = request.path_params["collection"]
        prefix = request.query_params.get("partition", "")
        return JSONResponse(await call("list_json", collection, prefix))

    async def get_record(request: Request) -> Response:
        p = request.path_params
        record = await call("get_json", p["collection"], p["key"],
                            request.query_params.get("partition"))
        if record is None:
            raise NotFoundError(f"no record {p['collection']}/{p['key']}")
        return JSONResponse(record)

    async def put_record(request: Request) -> Response:
        p = request.path_params
        body = _strict_json(await request.body())
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise UsageError('body must be {"fields": {...}, "partition": optional}')
        result = await call("put_json", p["collection"], p["key"], body["fields"],
                            body.get("partition"))
        service.sync_now()
        return JSONResponse(result, status_code=200)

    async def delete_record(request: Request) -> Response:
        p = request.path_params
        result = await call("delete_json", p["collection"], p["key"],
                            request.query_params.get("partition"))
        service.sync_now()
        return JSONResponse(result)

    async def progress_route(request: Request) -> Response:
        collection = request.query_params.get("collection", "voters")
        return JSONResponse(await call("progress_json", collection))

    async def conflicts(request: Request) -> Response:
        return JSONResponse(await call("conflicts_json"))

    async def sync(request: Request) -> Response:
        service.sync_now()
        return JSONResponse({"ok": True, "peers": len(service.peers())}, status_code=202)

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def page(request: Request) -> Response:
        progress = await call("progress_json", "voters")
        return HTMLResponse(render_status(service.status(), service.peers(), progress))

    routes = [
        Route("/", page),
        Route("/api/openapi.json", openapi),
        Route("/api/status", guarded(status)),
        Route("/api/peers", guarded(peers)),
        Route("/api/records/{collection}", guarded(list_records)),
        Route("/api/records/{collection}/{key}", guarded(get_record), methods=["GET"]),
        Route("/api/records/{collection}/{key}", guarded(put_record), methods=["PUT"]),
        Route("/api/records/{collection}/{key}", guarded(delete_record), methods=["DELETE"]),
        Route("/api/conflicts", guarded(conflicts)),
        Route("/api/progress", guarded(progress_route)),
        Route("/api/sync", guarded(sync), methods=["POST"]),
    ]
    return Starlette(routes=routes)


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
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
