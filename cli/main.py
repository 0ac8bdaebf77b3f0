"""Entry point of the ``meshsync`` command: the click group and its sub-commands.

Start-up is kept short (a phone runs ``meshsync get`` often): this module imports
click only, and a sub-command's module (with the library parts it needs) is
imported when that command runs. ``meshsync --help`` lists the commands from
:data:`COMMANDS` without importing them (tests/test_cli_start.py checks it matches).
"""

from __future__ import annotations

import gettext
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

import click

#: Command name -> (its module in meshsync.cli, its short help for ``meshsync --help``,
#: the first sentence of its docstring).
COMMANDS: dict[str, tuple[str, str]] = {
    "authority": ("authority", "Run the certificate authority: the root (KPU) or a "
                               "district sub-authority."),
    "backup": ("backup", "Back up an SQLite home into one file, also while its daemon runs."),
    "bundle": ("bundle", "Export and import bundles (files of signed changes for USB "
                         "sticks, SD cards)."),
    "coklit": ("coklit", "The coklit voter list: generate, import, export, find, "
               "duplicates, progress."),
    "conflicts": ("read", "List records with open conflicts (concurrent edits of one "
                             "field)."),
    "daemon": ("daemon_cmd", "Run the node: sync listener, discovery, peer manager, local "
                             "API and status page, until SIGINT or SIGTERM."),
    "delete": ("records", "Delete a record (a tombstone that never expires); through the "
                          "daemon while one runs on the home."),
    "demo": ("demo", "Run a coklit district on this machine with real daemons; report "
                     "convergence and progress; exit 1 if the nodes did not converge."),
    "enroll": ("authority", "Install this device's certificate CERT (from `authority issue` "
                            "or `rotate`)."),
    "get": ("read", "Show one record, with any conflicts."),
    "init": ("records", "Create a node home with a new Ed25519 device key; print the "
                        "device id."),
    "login": ("login", "Print a one-time link that logs a browser in to the running "
                       "daemon's status page (it works once, within 2 minutes)."),
    "log": ("records", "Show feeds (author, partition, seq), fork evidence, refused changes "
                       "and the changes quarantined when a revocation was learned (what a "
                       "revoked key wrote)."),
    "ls": ("read", "List records of COLLECTION."),
    "peers": ("daemon_cmd", "List the peers the running daemon knows."),
    "put": ("records", "Set fields of a record."),
    "rekey": ("rotation", "Start a key rotation: a new device key (next.key, 0600) and its "
                          "request (next.csr)."),
    "restore": ("backup", "Make a new home from a backup FILE, with a new device key."),
    "schema": ("schema", "Show the signed schema versions this node holds; the newest of "
                         "each collection judges every edit."),
    "serve": ("sync", "Accept sync sessions until SIGINT or SIGTERM."),
    "status": ("daemon_cmd", "Show the node's status (from the running daemon, else from "
                             "the store)."),
    "sync": ("sync", "Sync once with a peer, both ways (refused while a daemon runs on "
                      "the home: it syncs by itself)."),
    "wipe": ("wipe", "Delete every voter's data this home holds (store, WAL, logs, "
                     "backups, bundles in clear), keeping its keys, certificates and "
                     "settings; the device's own changes are first sealed for the "
                     "authority in an evidence bundle."),
}


def load_module(name: str) -> list[click.Command]:
    """Import ``meshsync.cli.<name>`` and return its top-level commands (its
    ``COMMANDS``). The ``authority`` group gets its ``rotate`` and ``revoke``
    sub-commands (cli/rotation.py, cli/revoke.py) here."""
    module = importlib.import_module(f"meshsync.cli.{name}")
    if name == "authority":
        from meshsync.cli.revoke import revoke
        from meshsync.cli.rotation import rotate
        from meshsync.cli.schema import schema_group

        module.authority_group.add_command(rotate)
        module.authority_group.add_command(revoke)
        module.authority_group.add_command(schema_group)
    return list(module.COMMANDS)


#: The help's translation, once :func:`_speak` found a language other than English.
_SPOKEN: dict[str, Callable[[str], str]] = {}


def _maybe_not_english() -> bool:
    """Whether the environment may choose a language other than English (checked
    without importing the catalogues, so English help stays as light as it was)."""
    for name in ("MESHSYNC_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return not value.lower().startswith(("en", "c", "posix"))
    return False


def _speak(ctx: click.Context, commands: Iterable[click.Command | click.Option]) -> None:
    """Help and click's words of ``commands`` in the reader's language (``--lang``,
    else the environment: a home's ``lang`` is read later, by the command)."""
    lang = ctx.find_root().params.get("lang")
    if not (lang or _SPOKEN or _maybe_not_english()):
        return
    from meshsync.cli import help_i18n

    from meshsync.host import i18n
    from meshsync.model.errors import MeshsyncError

    try:
        i18n.configure(lang and lang.lower())
    except MeshsyncError:
        return  # a $MESHSYNC_LANG naming no language: the group's callback says so
    _SPOKEN["translate"] = i18n.translations(help_i18n.speak(commands)).gettext


class LazyGroup(click.Group):
    """A group whose sub-commands are imported when they are run, or their help shown
    (:data:`COMMANDS`); its own ``--help`` lists them without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted."""
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module on first use; None if unknown."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            for command in load_module(COMMANDS[cmd_name][0]):
                self.add_command(command)
        _speak(ctx, [self])
        return self.commands.get(cmd_name)

    def load_all(self) -> None:
        """Import every command (for documentation and tests)."""
        for name in COMMANDS:
            self.get_command(click.Context(self), name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's help, in the reader's language (its ``--help`` option was made,
        in English, while the arguments were read: it is translated here too)."""
        _speak(ctx, [self, *filter(None, [self.get_help_option(ctx)])])
        super().format_help(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The ``Commands:`` section, as click writes it, from :data:`COMMANDS` for the
        commands not imported yet."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:  # click's own shortening, on a stand-in
                short = COMMANDS[name][1]
                short = _SPOKEN["translate"](short) if _SPOKEN else short
                text = click.Command(name, help=short).get_short_help_str(limit)
            elif command.hidden:
                continue
            else:
                text = command.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section(gettext.gettext("Commands")):  # click's word (cli/help_i18n.py)
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshsync")
@click.option("--lang", type=click.Choice(["id", "en"], case_sensitive=False), default=None,
              help="Language of messages [default: $MESHSYNC_LANG, the home's `lang`, "
                   "the locale, else en].")
def main(lang: str | None) -> None:
    """meshsync: sync signed voter-list records between phones, laptop and server."""
    from meshsync.host import i18n  # here, not at import: `meshsync --help` stays light
    from meshsync.model.errors import MeshsyncError

    try:
        i18n.configure(lang and lang.lower())
    except MeshsyncError as exc:  # a UsageError: $MESHSYNC_LANG names no known language
        raise click.ClickException(i18n.describe(exc)) from None


def _language_of(ctx: click.Context | None) -> None:
    """Speak the ``--lang`` click read before a usage error stopped it (the group's
    callback, which installs it, runs only once a command is found)."""
    from meshsync.host import i18n

    lang = ctx.find_root().params.get("lang") if ctx else None
    if lang:
        i18n.install(lang.lower(), explicit=True)


def _error(text: str) -> str:
    """``meshsync: error: TEXT`` in the reader's language (imports the catalogue only
    when there is an error to show)."""
    from meshsync.host import i18n

    return i18n.gettext("meshsync: error: %(message)s") % {"message": text}


def interrupted() -> NoReturn:
    """Ctrl-C: one line, never a traceback, and exit 130. Every command stores in
    transactions, so what it stored before the interrupt is complete; a command that
    can say how much (sync) catches KeyboardInterrupt itself first."""
    from meshsync.host import i18n

    click.echo(_error(i18n.gettext("interrupted (Ctrl-C); nothing half-stored")), err=True)
    sys.exit(130)


def run() -> None:
    """The click side of the console script (cli/start.py runs a plain ``get`` without
    click and hands every other command line here): usage errors (unknown option,
    missing argument, bad value) print one ``meshsync: error:`` line and exit 2, like
    every other error."""
    try:
        main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        from meshsync.host import i18n

        _language_of(exc.ctx)
        text = exc.format_message()
        if exc.ctx:
            text = i18n.gettext("%(message)s (see: %(command)s --help)") % {
                "message": text, "command": exc.ctx.command_path}
        click.echo(_error(text), err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        interrupted()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(_error(exc.format_message()), err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
