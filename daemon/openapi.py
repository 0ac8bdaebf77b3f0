"""OpenAPI 3.1 description of the local HTTP API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

_RECORD = {
    "type": "object",
    "properties": {
        "partition": {"type": "string"}, "collection": {"type": "string"},
        "key": {"type": "string"}, "fields": {"type": "object"},
        "deleted": {"type": "boolean"},
        "conflicts": {"type": "object", "description": "field -> versions, winner first"},
    },
    "required": ["partition", "collection", "key", "fields", "deleted", "conflicts"],
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _json(schema: dict[str, Any], text: str = "OK") -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


_ERRORS = {"400": _json(_ERROR, "bad input"), "401": _json(_ERROR, "missing or wrong token"),
           "404": _json(_ERROR, "no such record")}
_COLL = {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
_PART = {"name": "partition", "in": "query", "required": False, "schema": {"type": "string"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "meshsync local API", "version": "1",
             "description": "Loopback-only API of a meshsync daemon. Send the token from "
                            "the home's api.token as `Authorization: Bearer TOKEN`."},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
                   "schemas": {"Record": _RECORD, "Error": _ERROR}},
    "security": [{"token": []}],
    "paths": {
        "/": {"get": {"summary": "The operator's status page (HTML; no personal data)",
                      "security": [],
                      "responses": {"200": {"description": "OK", "content": {
                          "text/html": {"schema": {"type": "string"}}}}}}},
        "/api/openapi.json": {"get": {"summary": "This description", "security": [],
                                      "responses": {"200": _json({"type": "object"})}}},
        "/api/status": {"get": {"summary": "Node status: identity, diagnosis, peers, "
                                           "pending changes, conflicts, clock warnings",
                                "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/peers": {"get": {"summary": "Peer table",
                               "responses": {"200": _json({"type": "array",
                                                           "items": {"type": "object"}}),
                                             **_ERRORS}}},
        "/api/records/{collection}": {"get": {
            "summary": "List records under an optional partition prefix",
            "parameters": [_COLL, _PART],
            "responses": {"200": _json({"type": "array", "items": _RECORD}), **_ERRORS}}},
        "/api/records/{collection}/{key}": {
            "get": {"summary": "One record", "parameters": [_COLL, _KEY, _PART],
                    "responses": {"200": _json(_RECORD), **_ERRORS}},
            "put": {"summary": "Set fields (others keep their values)",
                    "parameters": [_COLL, _KEY],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "required": ["fields"], "properties": {
                            "fields": {"type": "object"},
                            "partition": {"type": "string"}}}}}},
                    "responses": {"200": _json({"type": "object"}), **_ERRORS}},
            "delete": {"summary": "Delete (tombstone)", "parameters": [_COLL, _KEY, _PART],
                       "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/conflicts": {"get": {"summary": "Records with open conflicts",
                                   "responses": {"200": _json({"type": "array",
                                                               "items": _RECORD}),
                                                 **_ERRORS}}},
        "/api/progress": {"get": {
            "summary": "Progress per TPS and per village: records by status",
            "parameters": [{"name": "collection", "in": "query", "required": False,
                            "schema": {"type": "string", "default": "voters"}}],
            "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/sync": {"post": {"summary": "Sync with every known peer now",
                               "responses": {"202": _json({"type": "object"}), **_ERRORS}}},
    },
}
