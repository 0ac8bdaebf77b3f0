"""``GET /static/laptop/{name}``: the pages' stylesheets and scripts, from the package
(``daemon/static/``; nothing is loaded from the internet). Guarded like every page
(token or browser session, Host). Only plain file names of the folder's ``.css`` and
``.js`` files are served: anything else is 404."""

from __future__ import annotations

import re

from meshsync.daemon.templating import STATIC
from starlette.requests import Request
from starlette.responses import Response

from meshsync.model.errors import NotFoundError

#: A servable file name: lower-case letters, digits, ``-``/``_``, then .css or .js.
NAME = re.compile(r"[a-z0-9_-]{1,40}\.(css|js)")
TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}


#: The route's path template.
PATH = "/static/laptop/{name}"


async def static_file(request: Request) -> Response:
    """The file ``name`` of ``daemon/static/laptop``; NotFoundError (404) otherwise."""
    name = request.path_params["name"]
    match = NAME.fullmatch(name)
    path = STATIC / "laptop" / name
    if match is None or not path.is_file():
        raise NotFoundError(f"no such file {name[:40]!r} under /static/laptop")
    return Response(path.read_bytes(), media_type=TYPES[match.group(1)],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
