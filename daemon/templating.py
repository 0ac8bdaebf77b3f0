"""Jinja2 templates for every page the daemon serves (docs/architecture.md §9).

One :class:`jinja2.Environment` per language, loaded from ``daemon/templates/``
(installed as ``meshsync.daemon/templates``), autoescaping HTML, with Jinja2's ``i18n``
extension bound to the ``meshsync`` gettext catalogues (:mod:`meshsync.host.i18n`): a
template writes ``{{ _("Custody") }}`` or ``{% trans %}…{% endtrans %}`` and Babel
extracts it (``babel.cfg``, ``python .ci/catalogues.py update``). Filters format for the
reader: ``number`` (``16.417``), ``ago`` (``3 menit lalu``), ``clock`` (``10.32``),
``day`` (``7 Des 2026``).

Static assets (CSS, the small scripts, icons) ship in ``daemon/static/`` and are served
from the package: no page loads anything from the internet.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jinja2

from meshsync.host import i18n

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def _ago_ms(ms: int | None, lang: str) -> str:
    if not ms:
        return i18n.translations(lang).gettext("never")
    return i18n.ago(time.time() - ms / 1000, lang)


@functools.cache
def _group_symbol(lang: str) -> str:
    from babel.numbers import get_group_symbol

    return str(get_group_symbol(lang))


def number(value: Any, lang: str) -> str:
    """``value`` as the reader writes numbers (``16.417`` in Indonesian): whole numbers
    grouped by threes with the language's separator (Babel's symbol, looked up once:
    a page of 600 TPS rows formats thousands of counts), others by Babel."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}".replace(",", _group_symbol(lang))
    return i18n.number(value, lang)


@functools.cache
def environment(lang: str) -> jinja2.Environment:
    """The template environment speaking ``lang`` (``"id"`` or ``"en"``); cached."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "xml", "svg")),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["number"] = lambda v: number(v, lang)
    env.filters["ago"] = lambda ms: _ago_ms(ms, lang)
    env.filters["clock"] = lambda ms: i18n.clock_time(ms, lang) if ms else ""
    env.filters["day"] = lambda ms: i18n.day(ms, lang) if ms else ""
    env.globals["lang"] = lang
    return env


def render(name: str, lang: str, **context: Any) -> str:
    """Template ``name`` (a path under ``daemon/templates``) rendered in ``lang``.

    Raises:
        jinja2.TemplateNotFound: no such template.
        jinja2.UndefinedError: the template used a name ``context`` lacks.
    """
    return environment(lang).get_template(name).render(**context)
