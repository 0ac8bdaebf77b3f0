"""Shared CLI plumbing: ``--home``, ``--json``, error reporting, output helpers."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from meshsync.errors import MeshsyncError
from meshsync.home import default_home

F = TypeVar("F", bound=Callable[..., Any])


def home_option(func: F) -> F:
    """Add ``--home DIR`` (default ``$MESHSYNC_HOME`` or the platform data dir)."""
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Node home directory [default: $MESHSYNC_HOME or the user data dir].",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json``: print machine-readable JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def resolve_home(home: Path | None) -> Path:
    """The home path chosen by ``--home`` or the environment."""
    return home if home is not None else default_home()


def fail(message: str, code: int = 1) -> None:
    """Print ``meshsync: error: MESSAGE`` on stderr (one line) and exit with ``code``."""
    click.echo(f"meshsync: error: {message}", err=True)
    sys.exit(code)


def errors_to_exit(func: F) -> F:
    """Turn :class:`MeshsyncError` (and OS errors) into a one-line message and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MeshsyncError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return None

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON with sorted keys (bytes shown as hex)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
