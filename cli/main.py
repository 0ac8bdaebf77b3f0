"""Entry point of the ``meshsync`` command: the click group and its sub-commands."""

from __future__ import annotations

import click
from meshsync.cli import authority as _authority
from meshsync.cli import bundle as _bundle
from meshsync.cli import coklit as _coklit
from meshsync.cli import daemon_cmd as _daemon
from meshsync.cli import demo as _demo
from meshsync.cli import records as _records
from meshsync.cli import sync as _sync


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshsync")
def main() -> None:
    """meshsync: sync signed voter-list records between phones, laptop and server."""


for _module in (_records, _bundle, _authority, _sync, _daemon, _demo, _coklit):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":
    main()
