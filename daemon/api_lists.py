"""The local API's listings, paged by cursor: records of a collection and records
with open conflicts.

Each answer is ``{"records": [...], "next": CURSOR}``: at most ``limit`` records
(default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`) in the store's order
(collection, key, partition), and the cursor to pass as ``after`` for the next page,
null at the end. Paging is keyset paging in the store
(:meth:`meshsync.store.base.Store.records_page`): a page costs one bounded query
whatever its place, and the daemon holds one page at a time. A record written while
a client pages shows up if it sorts after the cursor; none is listed twice, and no
record present from the first page to the last is missed. The cursor is opaque:
base64url of the last position, which a client must not build itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial

from meshsync.daemon.api import ApiError, Handler, NodeService, _partition_param, in_thread
from meshsync.daemon.openapi import DEFAULT_LIMIT, MAX_LIMIT
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meshsync.model.values import record_to_json
from meshsync.store.base import RecordPos


def encode_cursor(pos: RecordPos | None) -> str | None:
    """The opaque ``next`` cursor of position ``pos`` (None at the end)."""
    if pos is None:
        return None
    raw = json.dumps(list(pos), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> RecordPos:
    """The position a cursor from :func:`encode_cursor` names; ApiError 400 naming
    ``after`` if it is not one."""
    bad = ApiError(400, "The after cursor is not one this API gave: pass the next value "
                        "of the previous page unchanged.", field="after")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        pos = json.loads(raw.decode())
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if not (isinstance(pos, list) and len(pos) == 3 and all(isinstance(p, str) for p in pos)):
        raise bad
    return (pos[0], pos[1], pos[2])


def page_params(request: Request) -> tuple[RecordPos | None, int]:
    """The ``after`` cursor (decoded) and ``limit`` query parameters; ApiError 400
    naming the one at fault."""
    text = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"The limit must be a whole number from 1 to {MAX_LIMIT}.",
                       field="limit")
    after = request.query_params.get("after")
    return (decode_cursor(after) if after else None), int(text)


def _page(records: list[dict[str, object]], next_pos: RecordPos | None) -> Response:
    """The JSON answer of one page."""
    return JSONResponse({"records": [record_to_json(r) for r in records],
                         "next": encode_cursor(next_pos)})


def list_routes(service: NodeService) -> dict[str, Handler]:
    """The paged GET routes (path -> handler), to be guarded by :mod:`.api`."""
    async def records(request: Request) -> Response:
        collection = request.path_params["collection"]
        after, limit = page_params(request)
        if after is not None and after[0] != collection:
            raise ApiError(400, "The after cursor belongs to another collection's "
                                "listing.", field="after")
        found, next_pos = await in_thread(service, partial(
            service.records_page, collection, _partition_param(request) or "", after,
            limit))
        return _page(found, next_pos)

    async def conflicts(request: Request) -> Response:
        after, limit = page_params(request)
        found, next_pos = await in_thread(service, partial(service.conflicts_page, after,
                                                           limit))
        return _page(found, next_pos)

    return {"/api/records/{collection}": records, "/api/conflicts": conflicts}
