"""The reader's language: choosing it, loading its catalogue, formatting for it.

Catalogues (domain ``meshsync``) live in ``meshsync/locale/<lang>/LC_MESSAGES/`` as
``.po`` (the source, edited by people) and ``.mo`` (compiled, committed; a test checks
they match). They are read here with the standard library's :mod:`gettext`, so a
command's start never imports Babel; Babel extracts and compiles them
(``python .ci/catalogues.py``) and formats Indonesian numbers and dates on demand.

The language comes from, in order: ``--lang``, ``$MESHSYNC_LANG``, ``lang`` in the
home's ``config.toml``, the locale (``$LC_ALL``, ``$LC_MESSAGES``, ``$LANG``); the
command line falls back to English, the pages to Indonesian (:data:`PAGE_DEFAULT`).
"""

from __future__ import annotations

import functools
import gettext as _gettext
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshsync.model.errors import UsageError
from meshsync.model.text import Msg

DOMAIN = "meshsync"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
LANGUAGES = ("id", "en")
CLI_DEFAULT = "en"
PAGE_DEFAULT = "id"
ENV = "MESHSYNC_LANG"
LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")

_state: dict[str, Any] = {"lang": None, "explicit": False, "home": None}


def normalise(value: str | None) -> str | None:
    """``"id"`` or ``"en"`` for a language or locale name (``id_ID.UTF-8``, ``in``,
    ``en_US``); None for nothing, ``C``/``POSIX`` or a language without a catalogue."""
    if not value:
        return None
    code = value.split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    code = "id" if code == "in" else code  # the old ISO 639 code some phones still send
    return code if code in LANGUAGES else None


def check(value: str, where: str) -> str:
    """``value`` normalised, or a :class:`UsageError` naming ``where`` it was set."""
    lang = normalise(value)
    if lang is None:
        raise UsageError(Msg("%(where)s: unknown language %(value)r (known: %(known)s)",
                             where=where, value=value, known=", ".join(LANGUAGES)))
    return lang


def choose(cli: str | None, env: Mapping[str, str], config: str | None = None,
           default: str = CLI_DEFAULT) -> str:
    """The language, first found of: ``--lang`` (``cli``), ``$MESHSYNC_LANG``, the
    home's ``lang`` (``config``), the locale variables of ``env``, ``default``."""
    if cli:
        return check(cli, "--lang")
    if env.get(ENV):
        return check(env[ENV], ENV)
    if config:
        return check(config, "config.toml lang")
    for name in LOCALE_VARS:
        if env.get(name):  # the first one set decides, as in POSIX
            return normalise(env[name]) or default
    return default


def config_lang(home: Path) -> str | None:
    """``lang`` of ``home/config.toml`` (None if absent or unreadable: the daemon's
    configuration check reports a broken file)."""
    try:
        with (home / "config.toml").open("rb") as f:
            value = tomllib.load(f).get("lang")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None


@functools.cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The catalogue of ``lang`` (messages missing from it read in English)."""
    return _gettext.translation(DOMAIN, LOCALE_DIR, [lang], fallback=True)


def install(lang: str, *, explicit: bool = False) -> None:
    """Speak ``lang`` from now on (``explicit``: chosen by ``--lang`` or the
    environment, so a home's ``lang`` no longer overrides it)."""
    _state["lang"], _state["explicit"] = lang, explicit


def configure(cli: str | None, env: Mapping[str, str] | None = None) -> None:
    """Choose the command line's language from ``--lang``, the environment, the locale."""
    env = os.environ if env is None else env
    install(choose(cli, env), explicit=bool(cli or env.get(ENV)))


def use_home(home: Path) -> None:
    """Let the home's ``lang`` decide, unless ``--lang`` or ``$MESHSYNC_LANG`` did (the
    pages served for this home follow it too, :func:`page_lang`)."""
    lang = config_lang(home)
    if lang:
        lang = check(lang, f"{home / 'config.toml'}: lang")
    _state["home"] = lang
    if lang and not _state["explicit"]:
        install(lang)


def page_lang(config: str | None = None) -> str:
    """The pages' language: ``$MESHSYNC_LANG``, the home's ``lang`` (``config``, else
    the one :func:`use_home` read), else Indonesian (the locale of the machine serving
    a page says nothing about who reads it)."""
    return choose(None, {k: v for k, v in os.environ.items() if k == ENV},
                  config or _state["home"], default=PAGE_DEFAULT)


def current() -> str:
    """The language in use (chosen from the environment on first use)."""
    if _state["lang"] is None:
        configure(None)
    return str(_state["lang"])


def gettext(message: str) -> str:
    """``message`` in the current language."""
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for ``n``, in the current language."""
    return translations(current()).ngettext(singular, plural, n)


_ = gettext


def localize(message: str, lang: str | None = None) -> str:
    """A core :class:`~meshsync.model.text.Msg` in the reader's language (any other
    text is returned as it is)."""
    if not isinstance(message, Msg):
        return message
    text = translations(lang or current()).gettext(message.template)
    if not message.params:
        return text
    return text % {k: localize(v, lang) if isinstance(v, Msg) else v  # nested sentences
                   for k, v in message.params.items()}


def describe(exc: BaseException, lang: str | None = None) -> str:
    """The message of ``exc`` in the reader's language: a validator's refusal
    field by field, else its first argument when the core marked it."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and hasattr(exc, "collection"):
        detail = "; ".join(f"{f}: {localize(m, lang)}" if f else localize(m, lang)
                           for f, m in errors)
        return f"{exc.collection}: {detail}"
    first = exc.args[0] if len(exc.args) == 1 else None
    return localize(first, lang) if isinstance(first, Msg) else str(exc)


# Formatting (Babel's CLDR data; imported on first use, never at start-up).

def number(value: float, lang: str | None = None) -> str:
    """``16.417`` in Indonesian, ``16,417`` in English."""
    from babel.numbers import format_decimal

    return str(format_decimal(value, locale=lang or current()))


def day(ms: int, lang: str | None = None) -> str:
    """The date of Unix milliseconds, in this device's time zone: ``7 Des 2026``."""
    from datetime import UTC, datetime  # here: `meshsync get` starts without datetime

    from babel.dates import format_date

    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone()
    return str(format_date(when, "d MMM y", locale=lang or current()))


def clock_time(ms: int, lang: str | None = None) -> str:
    """The time of day of Unix milliseconds, in this device's time zone: ``10.32``."""
    from datetime import UTC, datetime

    from babel.dates import format_time

    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone()
    return str(format_time(when, "short", locale=lang or current()))


def ago(seconds: float, lang: str | None = None) -> str:
    """``3 menit lalu`` (``3 minutes ago``)."""
    from datetime import timedelta

    from babel.dates import format_timedelta

    text = str(format_timedelta(timedelta(seconds=-max(0.0, seconds)), add_direction=True,
                                locale=lang or current()))
    return text.replace(" yang lalu", " lalu")  # the shorter form KPU's screens use
