"""Entry point of the ``meshsync`` command: the click group and its sub-commands."""

from __future__ import annotations

import sys

import click
from meshsync.cli import authority as _authority
from meshsync.cli import bundle as _bundle
from meshsync.cli import coklit as _coklit
from meshsync.cli import daemon_cmd as _daemon
from meshsync.cli import demo as _demo
from meshsync.cli import records as _records
from meshsync.cli import revoke as _revoke
from meshsync.cli import rotation as _rotation
from meshsync.cli import sync as _sync


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshsync")
def main() -> None:
    """meshsync: sync signed voter-list records between phones, laptop and server."""


for _module in (_records, _bundle, _authority, _rotation, _sync, _daemon, _demo, _coklit):
    for _command in _module.COMMANDS:
        main.add_command(_command)
_authority.authority_group.add_command(_rotation.rotate)
_authority.authority_group.add_command(_revoke.revoke)


def run() -> None:
    """The console script: usage errors (unknown option, missing argument, bad value)
    print one ``meshsync: error:`` line and exit 2, like every other error."""
    try:
        main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"meshsync: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Ctrl-C: one line, never a traceback. Every command stores in transactions,
        # so what it stored before the interrupt is complete; a command that can say
        # how much (sync) catches KeyboardInterrupt itself first.
        click.echo("meshsync: error: interrupted (Ctrl-C); nothing half-stored", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"meshsync: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
