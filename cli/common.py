"""Shared CLI plumbing: ``--home``, ``--json``, error reporting, output helpers."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from meshsync.cli.show import home_path, json_text

from meshsync.host import i18n
from meshsync.model.errors import MeshsyncError
from meshsync.model.text import N_

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def home_option(func: F) -> F:
    """Add ``--home DIR`` (default ``$MESHSYNC_HOME`` or the platform data dir)."""
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Node home directory [default: $MESHSYNC_HOME or the user data dir].",
    )(func)


def record_arguments(func: F) -> F:
    """Add ``COLLECTION KEY`` and ``--partition`` (the record's partition, needed when
    the key exists in several): how ``get`` and ``delete`` name one record."""
    func = click.option("--partition", default=None,
                        help="The record's partition, when the key exists in several "
                             "[default: the one partition holding it].")(func)
    return click.argument("collection")(click.argument("key")(func))


def store_option(func: F) -> F:
    """Add ``--store DSN``: central's PostgreSQL store instead of the home's SQLite file
    (the same value as ``meshsync daemon --store``)."""
    return click.option(
        "--store", default=None, metavar="postgresql://…",
        help="Central: use this PostgreSQL store (as `meshsync daemon --store`) instead "
             "of the home's SQLite file.",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json``: print machine-readable JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


class PositiveSeconds(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.5
    """A positive, finite number of seconds (``nan``, ``inf``, 0 and below are usage
    errors, refused while the command line is read)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r}: give a positive, finite number of seconds", param, ctx)
        return seconds


def ask_passphrase(home: Path) -> str:
    """Ask for the passphrase of the encrypted ``home`` on the terminal (not echoed)."""
    return str(click.prompt(i18n.gettext("Passphrase for %(path)s") % {"path": home},
                            hide_input=True, err=True))


def install_passphrase_prompt() -> None:
    """Let an encrypted home ask for its passphrase when stdin is a terminal
    (:func:`meshsync.host.atrest.set_prompt`); elsewhere it comes from the
    environment or the command fails saying how to give it."""
    from meshsync.host import atrest

    if sys.stdin is not None and sys.stdin.isatty():
        atrest.set_prompt(ask_passphrase)


def resolve_home(home: Path | None) -> Path:
    """The home path chosen by ``--home`` or the environment (its config's ``lang``
    then chooses the language, unless ``--lang`` or ``$MESHSYNC_LANG`` did)."""
    return home_path(home)


# Long enough for every field a validator names (a new voter with only a name misses
# 13 fields: ~400 characters); short enough that a hostile peer's error text cannot
# flood the terminal.
MAX_MESSAGE = 4000


def fail(message: str, code: int = 1) -> None:
    """Print ``meshsync: error: MESSAGE`` on stderr in the reader's language (one line,
    at most ~4,000 characters) and exit with ``code``."""
    line = " ".join(i18n.localize(message).split())
    if len(line) > MAX_MESSAGE:
        more = len(line) - MAX_MESSAGE
        line = line[:MAX_MESSAGE] + i18n.gettext("… (%(n)d more characters)") % {"n": more}
    click.echo(i18n.gettext("meshsync: error: %(message)s") % {"message": line}, err=True)
    sys.exit(code)


def errors_to_exit(func: F) -> F:
    """Turn :class:`MeshsyncError` (and OS errors) into a one-line message and exit 1;
    a command with ``--home`` speaks its home's ``lang`` from the start."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if "home" in kwargs:  # the home's `lang`, before the first message
                resolve_home(kwargs["home"])
                install_passphrase_prompt()
            return func(*args, **kwargs)
        except BrokenPipeError:  # `meshsync ls | head`: the reader left; say nothing
            sys.stderr.close()
            sys.exit(141)
        except MeshsyncError as exc:
            fail(i18n.describe(exc))
        except OSError as exc:
            fail(f"{_os_reason(exc)}: {exc.filename}" if exc.filename else str(exc))
        return None

    return wrapper  # type: ignore[return-value]


#: The system's reasons an officer meets most (as Python's C locale words them).
OS_REASONS = (N_("No such file or directory"), N_("Permission denied"),
              N_("No space left on device"), N_("File exists"), N_("Is a directory"),
              N_("Not a directory"), N_("Read-only file system"))


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return i18n.gettext(reason) if reason in OS_REASONS else reason


def run_trio(async_fn: Callable[[], Awaitable[T]]) -> T:
    """``trio.run(async_fn)``; a refusal at start (a port in use, say) arrives wrapped in
    trio's nursery exception groups: raise its first leaf so it prints as one line.
    Ctrl-C raises a plain ``KeyboardInterrupt`` (never a group), which :func:`run`
    of ``meshsync.cli.main`` turns into one line."""
    import trio

    try:
        return trio.run(async_fn)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):  # Ctrl-C inside a nursery
            raise KeyboardInterrupt from None
        if leaves and all(isinstance(e, MeshsyncError | OSError) for e in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON with sorted keys (bytes shown as hex)."""
    click.echo(json_text(data))
