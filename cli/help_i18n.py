"""The command line's help and click's own words in the reader's language.

click writes help from the commands' docstrings and the options' ``help=`` texts, which
are fixed when a command's module is imported, and its own words (``Usage:``,
``Options``, usage errors such as "Missing argument") through :func:`gettext.gettext`
in gettext's default domain. :func:`speak` points that domain at the ``meshsync``
catalogues and translates, in place, the help of the commands loaded so far (the
English text is kept beside it, so a later call can translate again).

``.ci/catalogues.py`` extracts every command's help from the command tree
(:func:`help_texts`); ``cli/click_texts.py`` marks the click words we translate.
"""

from __future__ import annotations

import gettext
import inspect
import os
from collections.abc import Callable, Iterable, Iterator

import click

from meshsync.host import i18n

_KEPT = "_meshsync_english_"
Translate = Callable[[str], str]


def msgid(text: str) -> str:
    """The catalogue key of a help text: as click shows it (indentation removed, cut
    at ``\\f``)."""
    return inspect.cleandoc(text).partition("\f")[0]


def speak(commands: Iterable[click.Command | click.Option]) -> str:
    """Translate ``commands`` (and their sub-commands; an option alone is translated
    too) and click's words into the current language
    (:func:`meshsync.host.i18n.current`); returns it."""
    lang = i18n.current()
    # click calls gettext.gettext(): its default domain, languages from $LANGUAGE first.
    gettext.bindtextdomain(i18n.DOMAIN, str(i18n.LOCALE_DIR))
    gettext.textdomain(i18n.DOMAIN)
    os.environ["LANGUAGE"] = lang
    translate = i18n.translations(lang).gettext
    for item in commands:
        if isinstance(item, click.Option):
            _swap(item, "help", translate)
        else:
            _translate(item, translate)
    return lang


def _translate(command: click.Command, translate: Translate) -> None:
    _swap(command, "help", translate)
    _swap(command, "short_help", translate)
    for param in command.params:
        if isinstance(param, click.Option):
            _swap(param, "help", translate)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _translate(sub, translate)


def _swap(obj: object, attr: str, translate: Translate) -> None:
    english = getattr(obj, _KEPT + attr, None) or getattr(obj, attr, None)
    if not english:
        return
    setattr(obj, _KEPT + attr, english)
    setattr(obj, attr, translate(msgid(english)))


def help_texts(command: click.Command) -> Iterator[tuple[str, str]]:
    """``(module file, help text)`` of ``command`` and everything under it (run on
    commands not translated yet: the English texts)."""
    module = getattr(command.callback, "__module__", "") or ""
    where = module.replace("meshsync.cli.", "cli/") + ".py"
    for text in (command.help, command.short_help,
                 *(p.help for p in command.params if isinstance(p, click.Option))):
        if text:
            yield where, msgid(text)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from help_texts(sub)
