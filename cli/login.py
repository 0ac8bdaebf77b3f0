"""``meshsync login``: a one-time link that logs a browser in to the daemon's status
page (the local API needs the token or a browser session: docs/architecture.md §9)."""

from __future__ import annotations

from pathlib import Path

import click
from meshsync.cli.common import echo_json, errors_to_exit, home_option, json_option, resolve_home

from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.model.errors import UsageError


@click.command()
@home_option
@json_option
@click.option("--open", "open_browser", is_flag=True,
              help="Also open the link in this computer's web browser.")
@errors_to_exit
def login(home: Path | None, as_json: bool, open_browser: bool) -> None:
    """Print a one-time link that logs a browser in to the running daemon's status page
    (it works once, within 2 minutes)."""
    from meshsync.cli.writer import running_daemon

    path = resolve_home(home)
    Home.open(path)
    api = running_daemon(path)
    if api is None:
        raise UsageError(_("no daemon is running on %(home)s (start: meshsync daemon "
                           "--home %(home)s)") % {"home": path})
    link = api.call_json("POST", "/api/login-links")
    if as_json:
        echo_json(link)
    else:
        minutes = int(str(link["expires_in_s"])) // 60
        click.echo(_("Open this link in a browser on this computer within %(minutes)d minutes "
                     "(it works once):") % {"minutes": minutes})
        click.echo(str(link["url"]))
    if open_browser:
        import webbrowser

        webbrowser.open(str(link["url"]))


COMMANDS = [login]
