"""The OpenAPI entries of the KPU page (:mod:`.kpu_page`) and the static files
(:mod:`.static_files`), merged into :data:`meshsync.daemon.openapi.OPENAPI`."""

from __future__ import annotations

from typing import Any

_HTML = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
_QUERY = [
    {"name": "sort", "in": "query", "schema": {"type": "string", "enum": [
        "nama", "pemilih", "dicoklit", "persen", "belum", "ms", "tms", "ubah", "baru",
        "konflik", "terakhir", "diam"]}, "description": "column to order the rows by"},
    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
    {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                               "maximum": 366, "default": 3},
     "description": "a TPS with no coklit result for this many days is highlighted"},
]
_DAYS = _QUERY[2:]


def _page(summary: str, errors: dict[str, Any], params: list[dict[str, Any]]
          ) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params,
                    "responses": {"200": _HTML, **errors}}}


def kpu_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """The paths, with ``errors`` (the API's shared error responses) on each."""
    distrik = {"name": "distrik", "in": "path", "required": True, "schema": {"type": "string"}}
    kampung = {"name": "kampung", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/kpu": _page("KPU page at central: coklit progress per distrik (HTML)", errors,
                      _QUERY),
        "/kpu/export.csv": {"get": {
            "summary": "Coklit progress per TPS as CSV (streamed)", "parameters": _DAYS,
            "responses": {"200": {"description": "OK", "content": {
                "text/csv": {"schema": {"type": "string"}}}}, **errors}}},
        "/kpu/{distrik}": _page("KPU page: the kampung of one distrik (HTML)", errors,
                                [distrik, *_QUERY]),
        "/kpu/{distrik}/{kampung}": _page("KPU page: the TPS of one kampung (HTML)", errors,
                                          [distrik, kampung, *_QUERY]),
        "/static/{path}": {"get": {
            "summary": "The pages' stylesheets, scripts and icons (from the package: "
                       "`laptop/laptop.css`, `kpu/kpu.css`)",
            "parameters": [{"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}, **errors}}},
    }
