"""``meshsync backup`` and ``meshsync restore``: one file holding an SQLite home, made
while its daemon runs, and a new home made from it that never forks the old device's
feeds (it gets a new key; see :mod:`meshsync.host.backup` and docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from meshsync.cli.common import echo_json, errors_to_exit, home_option, json_option, resolve_home

from meshsync.host.backup import make_backup, restore_backup
from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _


def _progress_printer(enabled: bool) -> Any:
    """A ``progress(copied, total)`` printing pages copied on one terminal line, or
    None when stderr is not a terminal (or ``--json``)."""
    if not enabled or not sys.stderr.isatty():
        return None

    def show(copied: int, total: int) -> None:
        percent = 100 * copied // max(total, 1)
        click.echo("\r" + _("copying the store: %(copied)d/%(total)d pages (%(percent)d%%)")
                   % {"copied": copied, "total": total, "percent": percent}, err=True,
                   nl=copied >= total)

    return show


@click.command("backup")
@home_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Backup file to write (mode 0600; must not exist).")
@json_option
@errors_to_exit
def backup(home: Path | None, output: Path, as_json: bool) -> None:
    """Back up an SQLite home into one file, also while its daemon runs.

    The file (a gzip tar, mode 0600) holds a consistent copy of the store, made with
    SQLite's online backup API, and config.toml and the certificates. It holds no
    private key: a restored home gets a new key (meshsync restore), so it never signs
    as this device and never forks its feeds.
    """
    node_home = Home.open(resolve_home(home))
    data = make_backup(node_home, output, _progress_printer(not as_json))
    if as_json:
        echo_json(data)
        return
    heads = data["heads"]
    click.echo(_("backup: %(file)s (%(bytes)s bytes, mode 0600)")
               % {"file": output, "bytes": data["bytes"]})
    click.echo(_("device: %(id)s") % {"id": data["device_id"]})
    if isinstance(heads, dict):
        for partition, seq in heads.items():
            click.echo(_("  its feed in %(partition)s: seq %(seq)s")
                       % {"partition": partition, "seq": seq})
    click.echo(_("no private key is in the file: a restore makes a new device key"))


@click.command("restore")
@click.argument("backup_file", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new home to make (missing or an empty folder).")
@json_option
@errors_to_exit
def restore(backup_file: Path, home: Path, as_json: bool) -> None:
    """Make a new home from a backup FILE, with a new device key.

    The new home holds every record of the backup but is not enrolled: it never
    signs as the old device. Its authority rotates the old device to the new key
    (meshsync authority rotate OLD_ID HOME/device.csr --after-seq N), then
    meshsync enroll installs the certificate. Refused over an existing home or one
    in use.
    """
    data = restore_backup(backup_file, home)
    if as_json:
        echo_json(data)
        return
    old_cert = f" --old-cert {data['old_cert']}" if data["old_cert"] else ""
    click.echo(_("restored: %(home)s (not enrolled yet: it signs nothing until then)")
               % {"home": home})
    click.echo(_("old device: %(id)s (its key is not in the backup)")
               % {"id": data["old_device_id"]})
    click.echo(_("new device: %(id)s") % {"id": data["new_device_id"]})
    click.echo(_("next, at the authority (the PPK laptop for a phone): %(command)s") % {
        "command": f"meshsync authority rotate --home AUTHORITY {data['old_device_id']} "
                   f"{data['csr']} --after-seq N{old_cert} -o NEW.crt"})
    click.echo(_("  N: the old device's highest seq the authority holds, at least %(seq)s "
                 "(this backup's); see meshsync log --home AUTHORITY")
               % {"seq": data["after_seq"]})
    click.echo(_("then: %(command)s") % {"command": f"meshsync enroll --home {home} NEW.crt"})


COMMANDS: list[click.Command] = [backup, restore]
