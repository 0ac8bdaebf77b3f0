"""The read commands: get, ls, conflicts.

They open the home read-only (:mod:`meshsync.host.reading`): no device key is loaded,
no trust store or clock, so they start in a fraction of a writing command's time
(bench/cli_start.py; tests/test_cli_start.py checks what they import). What they print
is made in cli/show.py, which a plain ``meshsync get`` also uses without click
(cli/start.py).
"""

from __future__ import annotations

from pathlib import Path

import click
from meshsync.cli.common import (
    echo_json,
    errors_to_exit,
    home_option,
    json_option,
    record_arguments,
    resolve_home,
)
from meshsync.cli.show import read_record, record_text

from meshsync.host.i18n import gettext as _
from meshsync.host.reading import open_reader
from meshsync.model.change import check_partition
from meshsync.model.values import record_to_json
from meshsync.replica.records import Record


def _show_record(record: Record, as_json: bool) -> None:
    click.echo(record_text(record, as_json), nl=False)


@click.command()
@home_option
@record_arguments
@json_option
@errors_to_exit
def get(home: Path | None, collection: str, key: str, partition: str | None,
        as_json: bool) -> None:
    """Show one record, with any conflicts. --json shows bytes as {"$bytes": BASE64}
    and NaN or an infinity as {"$float": "NaN"} (see `put`)."""
    _show_record(read_record(home, collection, key, partition), as_json)


@click.command(name="ls")
@home_option
@click.argument("collection")
@click.option("--partition", default="", help="Only records under this partition prefix.")
@click.option("--deleted", is_flag=True, help="Include deleted records.")
@json_option
@errors_to_exit
def ls(home: Path | None, collection: str, partition: str, deleted: bool,
       as_json: bool) -> None:
    """List records of COLLECTION."""
    if partition:
        check_partition(partition)
    with open_reader(resolve_home(home)) as node:
        records = list(node.records(collection, partition, include_deleted=deleted))
    if as_json:
        echo_json([record_to_json(r.to_json()) for r in records])
        return
    for r in records:
        flags = (_(" !conflict") if r.conflicts else "") + (_(" (deleted)") if r.deleted else "")
        summary = ", ".join(f"{k}={v!r}" for k, v in list(r.fields.items())[:4])
        click.echo(f"{r.key}\t{r.partition}\t{summary}{flags}")


@click.command()
@home_option
@click.option("--collection", default=None)
@json_option
@errors_to_exit
def conflicts(home: Path | None, collection: str | None, as_json: bool) -> None:
    """List records with open conflicts (concurrent edits of one field)."""
    with open_reader(resolve_home(home)) as node:
        records = node.conflicts(collection)
    if as_json:
        echo_json([record_to_json(r.to_json()) for r in records])
        return
    if not records:
        click.echo(_("no conflicts"))
    for r in records:
        _show_record(r, False)


COMMANDS = [get, ls, conflicts]
