"""Errors of the local API in the language of the person reading them.

An error answer keeps ``error`` in English (stable for scripts and logs) and adds
``message`` (and ``fields`` for a refused edit) in the reader's language: the first
``Accept-Language`` with a catalogue, else the pages' language (Indonesian).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from meshsync.host import i18n
from meshsync.model.errors import MeshsyncError


def reader_lang(request: Request) -> str:
    """The language of the person behind ``request``: the first of its
    ``Accept-Language`` (RFC 9110 §12.5.4, in the order sent) that has a catalogue,
    else the pages' language (:func:`meshsync.host.i18n.page_lang`)."""
    for item in request.headers.get("accept-language", "").split(","):
        lang = i18n.normalise(item.split(";")[0].strip())
        if lang:
            return lang
    return i18n.page_lang()


def for_people(exc: MeshsyncError, request: Request) -> dict[str, Any]:
    """The members of an error answer a person reads: ``message`` (the error in the
    reader's language, :func:`reader_lang`) and, for a refused edit, ``fields`` (each
    field at fault -> its problem in that language, to show on the field)."""
    lang = reader_lang(request)
    extra: dict[str, Any] = {"message": i18n.describe(exc, lang)}
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list):
        extra["fields"] = {f: i18n.localize(m, lang) for f, m in errors if f}
    return extra
