"""The local API's routes for the CLI's writes that are not one record: a bundle, a
voter list, a certificate to enrol, a key rotation to start, the credentials an
authority command made.

While a daemon holds its home, ``meshsync bundle import``, ``coklit import``,
``enroll``, ``rekey`` and the authority commands (``authority revoke``, ``rotate``,
``install``, ``schema publish``) send their work here (one home, one writer:
docs/architecture.md §9), and so may any app holding the token. Uploads (bundles,
voter lists) are streamed to a folder in the home, at most :data:`MAX_UPLOAD_BYTES`,
and deleted once applied. Errors are the API's JSON errors (see :mod:`.api`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio
from meshsync.daemon.api import (
    ApiError,
    Handler,
    JsonObject,
    NodeService,
    _read_body,
    in_thread,
)
from meshsync.daemon.openapi import MAX_BATCH_SIZE, MAX_UPLOAD_BYTES
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meshsync.model.errors import RemoteError
from meshsync.model.values import JsonInputError, loads_strict

T = TypeVar("T")


def _upload_name(request: Request, default: str) -> str:
    """The ``name`` query parameter as a bare file name (no folders), else ``default``."""
    name = Path(request.query_params.get("name", "")).name
    return name if name not in ("", ".", "..") else default


async def _spool(request: Request, folder: Path, name: str) -> Path:
    """Stream the request body to ``folder/name``; ApiError 413 (and stop reading)
    past :data:`MAX_UPLOAD_BYTES`."""
    path = folder / name
    size = 0
    async with await trio.open_file(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise ApiError(413, f"upload larger than the limit of {MAX_UPLOAD_BYTES} "
                                    "bytes", limit_bytes=MAX_UPLOAD_BYTES)
            await out.write(chunk)
    return path


def _batch_size(request: Request) -> int:
    """The ``batch_size`` query parameter (default 500); ApiError 400 naming it unless
    a whole number from 1 to :data:`MAX_BATCH_SIZE`."""
    text = request.query_params.get("batch_size", "500")
    if not text.isdigit() or not 1 <= int(text) <= MAX_BATCH_SIZE:
        raise ApiError(400, f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}, "
                            f"got {text[:20]!r}", field="batch_size")
    return int(text)


def _rekey_name(raw: bytes) -> str | None:
    """``name`` of a rekey body ``{"name": TEXT or null}`` (an empty body: None)."""
    if not raw.strip():
        return None
    try:
        body = loads_strict(raw)
    except JsonInputError as exc:
        raise ApiError(400, f"request body: {exc}") from exc
    if not isinstance(body, dict) or set(body) - {"name"}:
        raise ApiError(400, 'request body must be {"name": TEXT or null}')
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "name must be text or null", field="name")
    return name


def write_routes(service: NodeService) -> dict[str, Handler]:
    """``path -> handler`` of the POST routes above, for :func:`.api.build_app`."""

    def call(func: Callable[[], T]) -> Awaitable[T]:
        return in_thread(service, func)

    def import_bundle_file(path: Path, name: str) -> JsonObject:
        try:
            with path.open("rb") as source:
                return service.import_bundle(source, name)
        except RemoteError as exc:  # a corrupted or forged upload: nothing was stored
            raise ApiError(400, str(exc)) from exc

    async def bundles(request: Request) -> Response:
        name = _upload_name(request, "upload.bundle")
        with tempfile.TemporaryDirectory(dir=service.home.path, prefix=".upload-") as tmp:
            path = await _spool(request, Path(tmp), name)
            report = await call(partial(import_bundle_file, path, name))
        service.sync_now()
        return JSONResponse(report)

    async def coklit_import(request: Request) -> Response:
        batch_size = _batch_size(request)
        name = _upload_name(request, "dpt.csv")
        with tempfile.TemporaryDirectory(dir=service.home.path, prefix=".upload-") as tmp:
            path = await _spool(request, Path(tmp), name)
            report = await call(partial(service.import_voters, path, batch_size))
        service.sync_now()
        return JSONResponse(report)

    async def enroll(request: Request) -> Response:
        pem = await _read_body(request)
        name = request.query_params.get("name") or "the certificate file"
        result = await call(partial(service.enroll, pem, name))
        service.sync_now()
        return JSONResponse(result)

    async def credentials(request: Request) -> Response:
        from meshsync.trust.pem import credential_blobs

        blobs = credential_blobs(await _read_body(request), "request body")
        result = await call(partial(service.add_credentials, blobs))
        service.sync_now()
        return JSONResponse(result)

    async def rekey(request: Request) -> Response:
        name = _rekey_name(await _read_body(request))
        return JSONResponse(await call(partial(service.rekey, name)))

    return {"/api/bundles": bundles, "/api/coklit/import": coklit_import,
            "/api/enroll": enroll, "/api/rekey": rekey, "/api/credentials": credentials}
