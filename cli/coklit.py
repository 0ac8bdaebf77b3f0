"""``meshsync coklit``: the voter-list example's commands (see :mod:`meshsync.coklit`).

generate   write a made-up voter list CSV for a Mimika distrik
import     load a voter list CSV into a home (central's baseline); sets the schema
export     write a home's voters as CSV
find       search voters by name (apostrophes, case and Unicode forms folded), NIK or NKK
duplicates list possible duplicate voters
progress   dicoklit X dari Y per TPS, kampung or distrik, with MS/TMS/ubah/baru
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import click
from meshsync.cli.common import (
    echo_json,
    errors_to_exit,
    fail,
    home_option,
    json_option,
    resolve_home,
    store_option,
)

from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.host.i18n import ngettext
from meshsync.host.local import adopt_schema, open_node
from meshsync.model.change import check_partition
from meshsync.model.errors import UsageError

COKLIT_SCHEMA = "coklit"


@click.group()
def coklit() -> None:
    """The coklit voter list: generate, import, export, find, duplicates, progress."""


@contextmanager
def _output(path: str) -> Iterator[TextIO]:
    """``-`` is standard output; a file is written whole or not at all."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as out:
            yield out
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


@coklit.command()
@click.option("--seed", type=int, required=True, help="Random seed: same seed, same file.")
@click.option("--distrik", required=True, help="A distrik of Mimika, e.g. Jila, Agimuga.")
@click.option("--voters-per-tps", type=click.IntRange(1, 5000), default=None,
              help="Voters per TPS [default: 300-600 at random].")
@click.option("--tps-per-kampung", type=click.IntRange(1, 50), default=None,
              help="TPS per kampung [default: 2-4 at random].")
@click.option("--coklit-results", is_flag=True,
              help="Mark some voters TMS, ubah or baru, as after coklit.")
@click.option("--duplicate-rate", type=click.FloatRange(0, 0.5), default=0.0,
              help="Share of voters listed again at another TPS (for duplicates).")
@click.option("-o", "--output", required=True, help="CSV file to write, or - for stdout.")
@json_option
@errors_to_exit
def generate(seed: int, distrik: str, voters_per_tps: int | None,
             tps_per_kampung: int | None, coklit_results: bool, duplicate_rate: float,
             output: str, as_json: bool) -> None:
    """Write a made-up voter list (fictitious people, real region names)."""
    from meshsync.coklit.dpt_csv import write_csv
    from meshsync.coklit.sample import generate as make

    try:
        voters = make(seed, distrik, voters_per_tps=voters_per_tps,
                      tps_per_kampung=tps_per_kampung, coklit_results=coklit_results,
                      duplicate_rate=duplicate_rate)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    with _output(output) as out:
        rows = write_csv(out, ((v.partition, v.key, v.fields) for v in voters))
    info = {"rows": rows, "tps": len({v.partition for v in voters}), "output": output}
    if as_json:
        echo_json(info)
    elif output != "-":
        click.echo(_("wrote %(rows)d voters in %(tps)d TPS to %(file)s")
                   % {"rows": rows, "tps": info["tps"], "file": output})


@coklit.command(name="import")
@home_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500,
              help="Rows per signed change.")
@store_option
@json_option
@errors_to_exit
def import_(home: Path | None, file: Path, batch_size: int, store: str | None,
            as_json: bool) -> None:
    """Import a voter list CSV (good rows are written; bad ones listed by line).

    Sets ``schema = "coklit"`` in the home's config.toml, so the voters validator
    checks every later edit and received change. While a daemon runs on the home the
    voter list goes through it, into the store it runs on (--store is then its).
    """
    from meshsync.cli.writer import home_writer, quote_segment

    path = resolve_home(home)
    with home_writer(path) as api:
        if api is None:
            report = _import_here(path, file, batch_size, store, as_json)
        else:
            route = (f"/api/coklit/import?batch_size={batch_size}"
                     f"&name={quote_segment(file.name)}")
            try:
                report = api.post_bytes(route, file.read_bytes(), "text/csv")
            except KeyboardInterrupt:
                # the daemon has the whole file and goes on: say so, not "nothing stored"
                fail(_("stopped waiting (Ctrl-C), but the daemon on %(home)s goes on "
                       "importing the whole file; see meshsync status or the laptop page")
                     % {"home": path}, 130)
    if as_json:
        echo_json(report)
    else:
        from meshsync.coklit.texts import import_lines

        for line in import_lines(report):
            click.echo(line)
    if report["bad"]:  # exit 3: rows were refused (listed by line)
        sys.exit(3)


def _import_here(path: Path, file: Path, batch_size: int, store: str | None,
                 as_json: bool) -> dict[str, object]:
    """Import into the home itself (this process holds its lock); the report as JSON.
    Ctrl-C: one line saying how many voters were stored, exit 130."""
    from meshsync.coklit.dpt_csv import ImportInterrupted, import_csv
    from meshsync.coklit.texts import IMPORT_INTERRUPTED

    adopt_schema(Home.open(path), COKLIT_SCHEMA)
    try:
        with open_node(path, store=store) as node, _progress(not as_json) as progress:
            return import_csv(node, file, batch_size=batch_size, progress=progress).to_json()
    except ImportInterrupted as stop:
        from meshsync.host import i18n

        fail(i18n.gettext(IMPORT_INTERRUPTED).format(stored=stop.stored, total=stop.total),
             130)
        raise  # not reached: fail exits


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A progress callback drawing a bar on a terminal's stderr, else None."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    with click.progressbar(length=1, label=_("importing"), file=sys.stderr) as bar:
        def update(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)
        yield update


@coklit.command()
@home_option
@click.option("--partition", default="", help="Only voters under this partition prefix.")
@click.option("-o", "--output", default="-", help="CSV file to write [default: stdout].")
@errors_to_exit
def export(home: Path | None, partition: str, output: str) -> None:
    """Write the home's voters as a voter list CSV."""
    from meshsync.coklit.dpt_csv import export_csv

    if partition:
        check_partition(partition)
    with open_node(resolve_home(home)) as node, _output(output) as out:
        rows = export_csv(node, out, partition)
    if output != "-":
        click.echo(ngettext("wrote %(n)d voter to %(file)s", "wrote %(n)d voters to %(file)s",
                            rows) % {"n": rows, "file": output})


def _voter_line(record: Any) -> str:
    from meshsync.coklit.visits import result_label

    f = record.fields
    return (f"{record.key}\t{record.partition}\t{f.get('nama', '')}\t"
            f"{f.get('tanggal_lahir', '')}\t{result_label(f)}")


@coklit.command()
@home_option
@click.option("--partition", default="", help="Only voters under this partition prefix.")
@click.option("--level", type=click.Choice(["tps", "kampung", "distrik"]), default="kampung",
              show_default=True, help="Rows per TPS, per kampung or per distrik.")
@json_option
@errors_to_exit
def progress(home: Path | None, partition: str, level: str, as_json: bool) -> None:
    """Coklit progress: dicoklit X dari Y, with MS/TMS/ubah/baru and the last result."""
    from meshsync.coklit.schema import register
    from meshsync.coklit.texts import progress_lines

    from meshsync.replica.progress import progress as figures

    if partition:
        check_partition(partition)
    with open_node(resolve_home(home)) as node:
        register(node)  # counts visits even on a home without schema = "coklit"
        data = figures(node.store, "voters", partition)
    if as_json:
        echo_json(data)
        return
    rows = data[{"tps": "tps", "kampung": "village", "distrik": "district"}[level]]
    for line in progress_lines(rows):
        click.echo(line)


@coklit.command()
@home_option
@click.argument("name", metavar="NAME|NIK|NKK")
@click.option("--partition", default="", help="Only voters under this partition prefix.")
@json_option
@errors_to_exit
def find(home: Path | None, name: str, partition: str, as_json: bool) -> None:
    """Search voters by name (or part of it: apostrophe variants and case match), or by
    NIK or NKK (16 digits, or some of them)."""
    from meshsync.coklit.names import find as search

    if partition:
        check_partition(partition)
    with open_node(resolve_home(home)) as node:
        records = search(node, name, partition)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    for record in records:
        click.echo(_voter_line(record))


@coklit.command()
@home_option
@click.option("--partition", default="", help="Only voters under this partition prefix.")
@json_option
@errors_to_exit
def duplicates(home: Path | None, partition: str, as_json: bool) -> None:
    """List possible duplicate voters: same name, birth year and kampung, or same NIK."""
    from meshsync.coklit.names import duplicates as clusters_of

    if partition:
        check_partition(partition)
    with open_node(resolve_home(home)) as node:
        clusters = clusters_of(node, partition)
    if as_json:
        echo_json([c.to_json() for c in clusters])
        return
    if not clusters:
        click.echo(_("no possible duplicates"))
    for cluster in clusters:
        click.echo(_("%(reason)s %(match)s: %(n)d records") % {
            "reason": cluster.reason, "match": cluster.match, "n": len(cluster.records)})
        for record in cluster.records:
            click.echo("  " + _voter_line(record))


COMMANDS = [coklit]
