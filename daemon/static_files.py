"""``GET /static/{path}``: the pages' stylesheets and icons, from the package's
``daemon/static/`` folder (:data:`meshsync.daemon.templating.STATIC`), behind the
same guard as every page. Only files inside that folder with a known type are served;
anything else is 404."""

from __future__ import annotations

from pathlib import Path

from meshsync.daemon.api import ApiError, Handler
from meshsync.daemon.templating import STATIC
from starlette.requests import Request
from starlette.responses import Response

#: Suffix -> Content-Type of what may be served.
TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".js": "text/javascript; charset=utf-8"}
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def static_file(root: Path, name: str) -> Path:
    """The file ``name`` (a relative path with ``/``) under ``root``; ApiError 404 if it
    is not a regular file there with a suffix in :data:`TYPES`."""
    missing = ApiError(404, f"no static file {name[:80]!r}")
    parts = name.split("/")
    if not name or "\x00" in name or any(p in ("", ".", "..") or p.startswith(".")
                                         for p in parts):
        raise missing
    path = root.joinpath(*parts)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, ValueError):  # ValueError: a name the file system cannot hold
        raise missing from None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file() \
            or resolved.suffix not in TYPES:
        raise missing
    return resolved


def static_routes() -> dict[str, Handler]:
    """``{"/static/{path:path}": handler}``, to be guarded by :mod:`.api`."""
    async def serve(request: Request) -> Response:
        path = static_file(STATIC, request.path_params["path"])
        return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)

    return {"/static/{path:path}": serve}
