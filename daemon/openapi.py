"""OpenAPI 3.1 description of the local HTTP API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from meshsync.daemon.events import EVENT_TYPES, QUEUE_SIZE
from meshsync.daemon.kpu_openapi import kpu_paths

from meshsync.model.limits import MAX_RECORD_BYTES

_VALUES = ("Field values are plain JSON, except values JSON cannot carry, which are "
           "one-key tag objects (the same form as `meshsync get --json`): bytes are "
           '`{"$bytes": "<base64>"}`, a non-finite float `{"$float": "NaN"}` (or '
           '"Infinity", "-Infinity"; never accepted as input), and a stored map that '
           'itself has exactly one key named $bytes, $float or $map is `{"$map": {...}}`.')
_RECORD = {
    "type": "object",
    "description": _VALUES,
    "properties": {
        "partition": {"type": "string"}, "collection": {"type": "string"},
        "key": {"type": "string"},
        "fields": {"type": "object", "description": "field -> value (see above)"},
        "deleted": {"type": "boolean"},
        "conflicts": {"type": "object", "description": "field -> versions, winner first; "
                                                       "each version's value as above"},
    },
    "required": ["partition", "collection", "key", "fields", "deleted", "conflicts"],
}
_ERROR = {
    "type": "object",
    "description": "Every error answer, including unknown paths (404) and methods (405).",
    "properties": {
        "error": {"type": "string", "description": "what is wrong, one line (English)"},
        "message": {"type": "string", "description": "an error a person reads (a refused "
                                                     "edit, a record not found): the same "
                                                     "in the language of Accept-Language, "
                                                     "else the pages' (Indonesian)"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "a refused edit: each field at fault -> its problem, "
                                  "in the reader's language"},
        "field": {"type": "string", "description": "where in the request the bad value is, "
                                                   "e.g. `fields.alamat.rt` or `partition`"},
        "limit_bytes": {"type": "integer", "description": "413 only: the largest body "
                                                         "accepted, in bytes"},
        "host": {"type": "string", "description": "421 only: the refused Host header"},
        "origin": {"type": "string", "description": "403 for a write only: the refused "
                                                    "Origin header (empty: none sent)"},
    },
    "required": ["error"],
}
#: Largest request body the API reads, in bytes: twice the record limit plus 64 KiB,
#: so every record within :data:`~meshsync.model.limits.MAX_RECORD_BYTES` fits as JSON even
#: with bytes in base64 (4/3) or escaped text. A larger ``Content-Length`` is refused
#: with 413 before any of the body is read, a chunked body as soon as it passes this.
MAX_BODY_BYTES = 2 * MAX_RECORD_BYTES + 64 * 1024
#: Largest upload (a bundle, a voter list CSV) in bytes: 1 GiB, streamed to the home.
MAX_UPLOAD_BYTES = 1 << 30
#: Records per page of a listing when ``limit`` is not given, and the most it may ask.
DEFAULT_LIMIT, MAX_LIMIT = 500, 5000
#: Largest ``batch_size`` of a voter list import (rows per signed change).
MAX_BATCH_SIZE = 10_000


_RESOLVE = {"type": "object", "additionalProperties": False,
            "required": ["collection", "key", "partition", "field", "author", "hlc"],
            "properties": {"collection": {"type": "string"}, "key": {"type": "string"},
                           "partition": {"type": "string"}, "field": {"type": "string"},
                           "author": {"type": "string", "description": "the chosen "
                                      "version's author (device id)"},
                           "hlc": {"type": ["string", "integer"], "description": "the "
                                   "chosen version's hlc, as in a record's conflicts"}}}


def _json(schema: dict[str, Any], text: str = "OK") -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


_HOST_421 = _json(_ERROR, "the Host header is not this API's address (127.0.0.1:PORT, "
                          "localhost:PORT or [::1]:PORT with the bound port; `host` "
                          "names it): DNS rebinding")
_ERRORS = {"400": _json(_ERROR, "bad input, or a query parameter the operation does not "
                                 "list (`field` names where, or the parameter)"),
           "401": _json(_ERROR, "missing or wrong token (or browser session)"),
           "403": _json(_ERROR, "a write whose Origin is not this API's own, or a "
                                "browser's write without Origin (`origin` names it)"),
           "404": _json(_ERROR, "no such record"),
           "405": _json(_ERROR, "method not allowed (the Allow header lists the methods)"),
           "421": _HOST_421}
_COLL = {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
_PART = {"name": "partition", "in": "query", "required": False, "schema": {"type": "string"}}

_PAGING = [{"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                       "default": DEFAULT_LIMIT},
            "description": "Records per page at most."},
           {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "The `next` cursor of the previous page, unchanged (opaque)."}]
_PAGE = {"type": "object", "required": ["records", "next"], "properties": {
    "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
    "next": {"type": ["string", "null"],
             "description": "Pass as `after` for the next page; null on the last page "
                            "(which may be empty)."}}}
_PAGED = ("Paged: at most `limit` records in the order (collection, key, partition), "
          "and `next`, the cursor of the next page (null at the end). A record written "
          "while a client pages appears if it sorts after the cursor; no record is listed "
          "twice, and none present from the first page to the last is missed.")
_EVENTS = (
    "A text/event-stream that stays open. Each event is sent as `id: SEQ`, `event: TYPE` "
    "and `data: JSON`; the JSON holds `seq` (one more per event the daemon publishes, "
    "so order and gaps show), `type`, `at_ms` (when it happened) and the members of its "
    f"type. A client more than {QUEUE_SIZE} events behind loses the oldest and gets a "
    "`lost` event saying how many. Comment lines keep an idle stream open. Types: "
    + " ".join(f"`{kind}`: {text}" for kind, text in EVENT_TYPES.items()))
_NAME = {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "the file's name, for messages"}
_UPLOAD_413 = {"413": _json(_ERROR, f"upload larger than {MAX_UPLOAD_BYTES} bytes")}


def _upload(summary: str, media: str, params: list[dict[str, Any]],
            text: str) -> dict[str, Any]:
    return {"post": {"summary": summary, "description": text, "parameters": params,
                     "requestBody": {"required": True, "content": {
                         media: {"schema": {"type": "string", "format": "binary"}}}},
                     "responses": {"200": _json({"type": "object"}), **_ERRORS,
                                   **_UPLOAD_413}}}


#: The CLI's writes while a daemon holds the home (one home, one writer): the same
#: reports as the commands' ``--json``.
_WRITES: dict[str, Any] = {
    "/api/bundles": _upload(
        "Import a bundle (as `meshsync bundle import`)", "application/octet-stream",
        [_NAME], "The body is the bundle file. The report lists applied, duplicate, "
                 "refused and invalid changes; a corrupted or forged bundle is refused "
                 "with 400 and changes nothing."),
    "/api/coklit/import": _upload(
        "Import a voter list CSV (as `meshsync coklit import`)", "text/csv",
        [_NAME, {"name": "batch_size", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE,
                            "default": 500}}],
        "The body is the CSV. Sets the home's schema to coklit; bad rows are listed "
        "by line in the report."),
    "/api/enroll": {"post": {
        "summary": "Install this device's certificate (as `meshsync enroll`)",
        "description": "The body is the PEM file from `authority issue` or `authority "
                       "rotate`. A certificate for the key `rekey` made switches the "
                       "daemon to that key at once. The answer is `{\"enrolment\": "
                       "{...}, \"warnings\": [line, ...]}`.",
        "parameters": [_NAME],
        "requestBody": {"required": True, "content": {"application/x-pem-file": {
            "schema": {"type": "string"}}}},
        "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
    "/api/credentials": {"post": {
        "summary": "Store credentials (as `meshsync authority revoke`, `rotate`, "
                   "`install`, `schema publish`)",
        "description": "The body is PEM text: CERTIFICATE, MESHSYNC REVOCATION and "
                       "MESHSYNC SCHEMA blocks. Each is checked by the trust store and "
                       "stored; a revocation quarantines the changes it refuses. They "
                       "travel with the next sync. The answer is `{\"added\": N, "
                       "\"held\": N}` (new, already held).",
        "requestBody": {"required": True, "content": {"application/x-pem-file": {
            "schema": {"type": "string"}}}},
        "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
    "/api/rekey": {"post": {
        "summary": "Start a key rotation (as `meshsync rekey`)",
        "description": "Makes next.key and next.csr in the home (or shows the waiting "
                       "ones); the daemon signs with its current key until `enroll`.",
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "name": {"type": ["string", "null"],
                         "description": "device name in the request"}}}}}},
        "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
}

_GUARD = ("Every request must name this API in `Host` (127.0.0.1:PORT, localhost:PORT "
          "or [::1]:PORT, the bound port exactly), else 421. Every operation but "
          "`/login` needs the token from the home's api.token as `Authorization: Bearer "
          "TOKEN`, or the browser session cookie a one-time login link sets (`meshsync "
          "login` prints one; HttpOnly, SameSite=Strict). A write (POST, PUT, DELETE) "
          "that sends `Origin` must send this API's own origin (`http://` + its Host); "
          "one without `Origin` must carry the token: a session cookie alone never "
          "writes. Both refusals are 403. ")
_LOGIN: dict[str, Any] = {
    "/login": {"get": {
        "summary": "Log a browser in with a one-time link (from `meshsync login`)",
        "description": "Sets the session cookie (HttpOnly, SameSite=Strict, Path=/) "
                       "and redirects to the status page. A link works once, within "
                       "120 seconds of being made.",
        "security": [],
        "parameters": [{"name": "once", "in": "query", "required": True,
                        "schema": {"type": "string"}},
                       {"name": "next", "in": "query", "schema": {"type": "string"},
                        "description": "the page to go to (a path on this API, such "
                                       "as `/kpu`); default `/`"}],
        "responses": {"303": {"description": "logged in: go to `/`", "headers": {
                          "Set-Cookie": {"schema": {"type": "string"}}}},
                      "403": _json(_ERROR, "a used, expired or unknown login link"),
                      "421": _HOST_421}}},
    "/api/login-links": {"post": {
        "summary": "Make a one-time login link for a browser (`meshsync login`)",
        "responses": {"200": _json({"type": "object", "required": ["url", "expires_in_s"],
                                    "properties": {"url": {"type": "string"},
                                                   "expires_in_s": {"type": "integer"}}}),
                      **_ERRORS}}},
}

#: The answer of ``POST /api/sync``.
SYNC_ANSWER: dict[str, Any] = {
    "type": "object", "required": ["ok", "peers", "unreachable"],
    "properties": {
        "ok": {"type": "boolean", "description": "true when every known peer is reachable"},
        "peers": {"type": "integer", "description": "peers known"},
        "unreachable": {"type": "array", "items": {
            "type": "object", "required": ["device_id", "reason"],
            "properties": {"device_id": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "meshsync local API", "version": "1",
             "description": "Loopback-only API of a meshsync daemon. " + _GUARD +
                            "Every error is JSON (`Error`), unknown paths (404) and "
                            "methods (405) included. " + _VALUES},
    "components": {"securitySchemes": {
        "token": {"type": "http", "scheme": "bearer"},
        "session": {"type": "apiKey", "in": "cookie", "name": "meshsync_session_PORT",
                    "description": "set by `/login`; PORT is the API's port"}},
        "schemas": {"Record": _RECORD, "Error": _ERROR}},
    "security": [{"token": []}, {"session": []}],
    "paths": {
        "/": {"get": {"summary": "The operator's page (HTML): on a laptop, connection to "
                                 "KPU, custody, devices, conflicts (with their values, to "
                                 "resolve) and coklit progress; at central, the status",
                      "responses": {"200": {"description": "OK", "content": {
                          "text/html": {"schema": {"type": "string"}}}}, **_ERRORS}}},
        "/api/conflicts/resolve": {"post": {
            "summary": "Keep one entry of a conflicting field (the laptop page's form)",
            "description": "Writes the chosen version's value as a new edit of the field, "
                           "which closes the conflict. A form post (urlencoded, from the "
                           "page: same origin, browser session) is answered with 303 to "
                           "the page; JSON with the write's result as a PUT, or 409 when "
                           "that entry is no longer open.",
            "requestBody": {"required": True, "content": {
                media: {"schema": _RESOLVE} for media in
                ("application/json", "application/x-www-form-urlencoded")}},
            "responses": {"200": _json({"type": "object"}),
                          "303": {"description": "form posts: back to the page"},
                          "409": _json(_ERROR, "that entry is no longer an open conflict"),
                          **_ERRORS}}},
        "/api/openapi.json": {"get": {"summary": "This description",
                                      "responses": {"200": _json({"type": "object"}),
                                                    **_ERRORS}}},
        **_LOGIN,
        **kpu_paths(_ERRORS),
        "/api/status": {"get": {"summary": "Node status: identity, diagnosis, peers, "
                                           "pending changes, conflicts, clock warnings, "
                                           "`progress` of each session in flight (as "
                                           "the `sync.progress` event)",
                                "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/peers": {"get": {"summary": "Peer table",
                               "responses": {"200": _json({"type": "array",
                                                           "items": {"type": "object"}}),
                                             **_ERRORS}}},
        "/api/records/{collection}": {"get": {
            "summary": "List records under an optional partition prefix",
            "description": _PAGED + " Deleted records are left out.",
            "parameters": [_COLL, _PART, *_PAGING],
            "responses": {"200": _json(_PAGE), **_ERRORS}}},
        "/api/records/{collection}/{key}": {
            "get": {"summary": "One record", "parameters": [_COLL, _KEY, _PART],
                    "responses": {"200": _json(_RECORD), **_ERRORS}},
            "put": {"summary": "Set fields (others keep their values)",
                    "description": "The body is RFC 8259 JSON: NaN, Infinity, floats beyond "
                                   "±1.8e308 and duplicate keys are refused with 400 naming "
                                   "the member, as are unknown members, integers outside "
                                   "[-2^63, 2^64-1], text with lone surrogates and values "
                                   "nested more than 15 levels. A body over "
                                   f"{MAX_BODY_BYTES} bytes is refused with 413 before it is "
                                   "read (a record is at most 8 MiB encoded: a larger one "
                                   "is refused with 400). The partition is a body member: "
                                   "a query parameter (`?partition=` included) is refused "
                                   "with 400 naming it, as on every operation that does "
                                   "not list it.",
                    "parameters": [_COLL, _KEY],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "required": ["fields"],
                                   "additionalProperties": False, "properties": {
                                       "fields": {"type": "object", "minProperties": 1,
                                                  "description": "field -> value; bytes as "
                                                  '{"$bytes": "<base64>"}'},
                                       "partition": {"type": "string", "description":
                                                     "where to write [default: the "
                                                     "home's partition]"}}}}}},
                    "responses": {"200": _json({"type": "object"}), **_ERRORS,
                                  "413": _json(_ERROR, "body larger than "
                                                       f"{MAX_BODY_BYTES} bytes")}},
            "delete": {"summary": "Delete (tombstone)", "parameters": [_COLL, _KEY, _PART],
                       "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/conflicts": {"get": {"summary": "Records with open conflicts",
                                   "description": _PAGED, "parameters": _PAGING,
                                   "responses": {"200": _json(_PAGE), **_ERRORS}}},
        "/api/progress": {"get": {
            "summary": "Progress per TPS and per village: records by status",
            "parameters": [{"name": "collection", "in": "query", "required": False,
                            "schema": {"type": "string", "default": "voters"}}],
            "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/events": {"get": {
            "summary": "What happens in the daemon, as server-sent events",
            "description": _EVENTS,
            "responses": {"200": {"description": "an endless event stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}, **_ERRORS}}},
        "/api/sync": {"post": {
            "summary": "Sync with every known peer now",
            "description": "Every peer this node knows is dialled now, including one that "
                           "has only connected to it (at the address it connected from, "
                           "on this daemon's listen port). `unreachable` names the peers "
                           "that cannot be reached: no address where it listens is known, "
                           "or its last dials failed; `ok` is false when there are any.",
            "responses": {"202": _json(SYNC_ANSWER), **_ERRORS}}},
        **_WRITES,
    },
}


def served_openapi(cookie_name: str) -> dict[str, Any]:
    """:data:`OPENAPI` as a daemon serves it: the session cookie's real name."""
    schemes = OPENAPI["components"]["securitySchemes"]
    session = {**schemes["session"], "name": cookie_name}
    components = {**OPENAPI["components"], "securitySchemes": {**schemes,
                                                               "session": session}}
    return {**OPENAPI, "components": components}
