"""``meshsync bundle export|import``: sneakernet files of signed changes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from meshsync.cli.common import (
    echo_json,
    errors_to_exit,
    home_option,
    json_option,
    resolve_home,
    store_option,
)
from meshsync.cli.writer import home_writer, quote_segment

from meshsync.host.i18n import gettext as _
from meshsync.host.i18n import ngettext
from meshsync.host.local import open_node
from meshsync.protocol.bundle import export_bundle, import_bundle


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback drawing a bar on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=1, label=label, file=sys.stderr) as bar:
        def update(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)
        yield update


@click.group()
def bundle() -> None:
    """Export and import bundles (files of signed changes for USB sticks, SD cards)."""


@bundle.command(name="export")
@home_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Bundle file to write.")
@store_option
@json_option
@errors_to_exit
def export_cmd(home: Path | None, output: Path, store: str | None, as_json: bool) -> None:
    """Write every change and credential this node holds to a bundle file (written
    to FILE.part, renamed to FILE once complete)."""
    tmp = output.with_name(output.name + ".part")
    with open_node(resolve_home(home), store=store) as node, tmp.open("wb") as f, \
            _progress(_("exporting"), not as_json) as progress:
        changes, size = export_bundle(node, f, progress=progress)
        f.flush()
    tmp.replace(output)
    if as_json:
        echo_json({"file": str(output), "changes": changes, "bytes": size})
    else:
        click.echo(ngettext("wrote %(n)d change (%(size)d bytes) to %(file)s",
                            "wrote %(n)d changes (%(size)d bytes) to %(file)s", changes)
                   % {"n": changes, "size": size, "file": output})


@bundle.command(name="import")
@home_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_option
@json_option
@errors_to_exit
def import_cmd(home: Path | None, file: Path, store: str | None, as_json: bool) -> None:
    """Verify a bundle and apply it. A corrupted or forged bundle changes nothing;
    changes refused one by one (scope, revocation, fork) are listed. While a daemon
    runs on the home the bundle goes through it (into the store it runs on)."""
    path = resolve_home(home)
    with home_writer(path) as api:
        if api is None:
            with open_node(path, store=store) as node, file.open("rb") as f, \
                    _progress(_("importing"), not as_json) as progress:
                report = import_bundle(node, f, source=f"bundle:{file.name}",
                                       progress=progress).to_json()
        else:
            report = api.post_bytes(f"/api/bundles?name={quote_segment(file.name)}",
                                    file.read_bytes(), "application/octet-stream")
    if as_json:
        echo_json(report)
    else:
        _print_report(report)
    if report["refused"] or report["invalid"]:  # exit 3: some changes were refused
        sys.exit(3)


def _items(report: dict[str, object], name: str) -> list[object]:
    value = report.get(name)
    return list(value) if isinstance(value, list) else []


def _rows(report: dict[str, object], name: str) -> list[dict[str, object]]:
    return [r for r in _items(report, name) if isinstance(r, dict)]


def _credentials(report: dict[str, object]) -> str:
    """``N new credential(s)``, and how many of them verify nothing here."""
    new, unverified = report["credentials_new"], report.get("credentials_unverified", 0)
    count = new if isinstance(new, int) else 0
    text = ngettext("%(n)d new credential", "%(n)d new credentials", count) % {"n": count}
    if unverified:
        text += _(" (%(n)s from an authority this node does not trust: they verify "
                  "nothing)") % {"n": unverified}
    return text


def _print_report(report: dict[str, object]) -> None:
    """The text form of an import report (the JSON of ``--json``)."""
    refused, invalid = _rows(report, "refused"), _rows(report, "invalid")
    quarantined = _items(report, "quarantined")
    held = (_(", %(n)d quarantined (held changes a revocation took back; see `meshsync "
              "log`)") % {"n": len(quarantined)} if quarantined else "")
    click.echo(_("%(applied)s changes applied, %(duplicates)s already held, %(refused)s "
                 "refused, %(invalid)d invalid, %(credentials)s%(held)s") % {
        "applied": report["applied"], "duplicates": report["duplicates"],
        "refused": report.get("refused_total", len(refused)), "invalid": len(invalid),
        "credentials": _credentials(report), "held": held})
    for r in refused + invalid:
        click.echo(_("  refused %(author)s seq %(seq)s of %(partition)s [%(stage)s]: "
                     "%(reason)s") % {**r, "author": str(r["author"])[:8]})
    for r in _rows(report, "outdated"):
        click.echo(_("  flagged %(author)s seq %(seq)s of %(partition)s [%(stage)s]: "
                     "%(reason)s") % {**r, "author": str(r["author"])[:8]})
    for text in _items(report, "credentials_refused"):
        click.echo(_("  refused credential: %(reason)s") % {"reason": text})
    for text in _items(report, "clock_warnings"):
        click.echo(_("  clock: %(warning)s") % {"warning": text})


COMMANDS = [bundle]
