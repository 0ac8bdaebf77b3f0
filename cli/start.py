"""The ``meshsync`` console script: a plain ``meshsync get`` runs without click.

click, with the standard-library modules only it needs, is about a third of
``meshsync get``'s start-up, and a phone runs ``get`` often (bench/cli_start.py). So
the console script first reads its command line itself. One of exactly this form::

    meshsync [--lang id|en] get [--home DIR] [--partition P] [--json] COLLECTION KEY

(the options after ``get`` in any order, each at most once, no value starting with
``-``) runs here, with the code of the click command (cli/show.py), when it succeeds
and what it prints is what click's ``echo`` would print: UTF-8 output holding no
escape character (click strips those when not writing to a terminal). Anything else
(another command, ``--help``, ``--home=DIR``, a typo, any error to report, a missing
record among them) goes to click (:func:`meshsync.cli.main.run`), from the start, and
prints what it always has: the read-only open writes nothing, so trying first changes
nothing. tests/test_cli_start.py compares the two on such command lines.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import NamedTuple


class PlainGet(NamedTuple):
    """The parts of a plain ``meshsync get`` command line."""

    lang: str | None
    home: Path | None
    partition: str | None
    as_json: bool
    collection: str
    key: str


#: The options of ``get`` that take a value.
_VALUED = ("--home", "--partition")


def plain_get(argv: list[str]) -> PlainGet | None:
    """``argv`` (the arguments after the program name) as a :class:`PlainGet`, or None
    if it is not a plain ``get`` command line (module docstring)."""
    args = list(argv)
    lang = None
    if args[:1] == ["--lang"]:
        if len(args) < 2 or not args[1].isascii() or args[1].lower() not in ("id", "en"):
            return None
        lang, args = args[1].lower(), args[2:]
    if args[:1] != ["get"]:
        return None
    values: dict[str, str] = {}
    as_json = False
    positional: list[str] = []
    tokens = iter(args[1:])
    for token in tokens:
        if token == "--json" and not as_json:  # noqa: S105 - an option, not a password
            as_json = True
        elif token in _VALUED and token not in values:
            value = next(tokens, "")
            if not value or value.startswith("-"):
                return None
            values[token] = value
        elif token.startswith("-"):
            return None
        else:
            positional.append(token)
    home = values.get("--home")
    if len(positional) != 2 or (home is not None and not _readable_folder_or_none(home)):
        return None
    return PlainGet(lang, Path(home) if home is not None else None,
                    values.get("--partition"), as_json, positional[0], positional[1])


def _readable_folder_or_none(path: str) -> bool:
    """Whether click's ``Path(file_okay=False)`` takes ``path`` as it is: nothing there,
    or a folder this user may read."""
    if not os.path.lexists(path):
        return True
    return os.path.isdir(path) and os.access(path, os.R_OK)


def _utf8(stream: object) -> bool:
    import codecs

    encoding = getattr(stream, "encoding", None)
    try:
        return encoding is not None and codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def run_plain_get(command: PlainGet) -> bool:
    """Run ``command`` and print the record, as click's ``get`` would; False (having
    printed nothing) if it fails or its output is not what click would print."""
    from meshsync.cli.show import read_record, record_text

    from meshsync.host import i18n

    try:
        i18n.configure(command.lang)
        record = read_record(command.home, command.collection, command.key,
                             command.partition)
        text = record_text(record, command.as_json)
    except Exception:  # click runs it again and reports the error
        return False
    if "\x1b" in text or os.name != "posix" or not _utf8(sys.stdout):
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # as cli/common.py errors_to_exit: the reader left
        sys.stderr.close()
        sys.exit(141)
    return True


def run() -> None:
    """The console script ``meshsync``: a plain ``get`` here, anything else by click."""
    # Collecting garbage finds none while ~150 modules are imported; a plain get
    # ends right after, and click's path turns the collector on again first.
    gc.disable()
    try:
        command = plain_get(sys.argv[1:])
        if command is not None and run_plain_get(command):
            return
    except KeyboardInterrupt:
        gc.enable()
        from meshsync.cli.main import interrupted

        interrupted()
    gc.enable()
    from meshsync.cli.main import run as run_click

    run_click()


if __name__ == "__main__":
    run()
