"""``meshsync bundle export|import``: sneakernet files of signed changes."""

from __future__ import annotations

import os
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
from meshsync.cli.wipe import evidence_if_revoked, wipe_revoked
from meshsync.cli.writer import home_writer, quote_segment

from meshsync.host.i18n import gettext as _
from meshsync.host.i18n import ngettext
from meshsync.host.local import open_node
from meshsync.model.errors import SealedError, UsageError
from meshsync.model.text import Msg
from meshsync.protocol.bundle import export_bundle, export_sealed, import_bundle, is_enrolled
from meshsync.protocol.recipients import Recipient, bundle_partitions, choose, eligible
from meshsync.replica.node import Node


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
@click.option("--to", "to", multiple=True, metavar="WHO",
              help="Seal only to these devices: a device id (6 characters or more), a "
                   "certificate name, a role or a scope (repeatable).")
@click.option("--clear", is_flag=True,
              help="Write the bundle unencrypted (tests and demos; anyone holding the "
                   "file reads every record in it).")
@store_option
@json_option
@errors_to_exit
def export_cmd(home: Path | None, output: Path, to: tuple[str, ...], clear: bool,
               store: str | None, as_json: bool) -> None:
    """Write every change and credential this node holds to a bundle file (written
    to FILE.part, renamed to FILE once complete), sealed to the enrolled devices
    allowed to hold what it carries (docs/protocol.md, "Sealed bundles")."""
    if clear and to:
        raise UsageError(Msg("--clear and --to exclude each other"))
    tmp = output.with_name(output.name + ".part")
    with open_node(resolve_home(home), store=store) as node:
        recipients = None if clear else _recipients(node, list(to))
        warn = clear and is_enrolled(node)  # it could have been sealed
        tmp.unlink(missing_ok=True)  # a leftover .part could carry another mode
        # 0600 from the start: a bundle holds voters' personal data (in clear with --clear)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f, \
                _progress(_("exporting"), not as_json) as progress:
            if recipients is None:
                changes, size = export_bundle(node, f, progress=progress)
            else:
                changes, size = export_sealed(node, f, [r.key for r in recipients],
                                              progress=progress)
            f.flush()
    tmp.replace(output)
    _print_export(output, changes, size, recipients, as_json)
    if warn:
        click.echo(_("in clear: anyone holding the file can read every record in it"),
                   err=True)


def _recipients(node: Node, to: list[str]) -> list[Recipient]:
    """The devices to seal to; SealedError when there are none (an unenrolled home)."""
    if not is_enrolled(node) or getattr(node.trust, "verified_devices", None) is None:
        raise SealedError(Msg("this home is not enrolled, so it cannot seal a bundle to "
                              "any device; use --clear for a bundle in clear (tests, demos)"))
    partitions = bundle_partitions(node)
    return choose(eligible(node, partitions, node.now_ms() // 1000), to)


def _print_export(output: Path, changes: int, size: int,
                  recipients: list[Recipient] | None, as_json: bool) -> None:
    if as_json:
        echo_json({"file": str(output), "changes": changes, "bytes": size,
                   "sealed": recipients is not None,
                   "recipients": [r.to_json() for r in recipients or []]})
        return
    click.echo(ngettext("wrote %(n)d change (%(size)d bytes) to %(file)s",
                        "wrote %(n)d changes (%(size)d bytes) to %(file)s", changes)
               % {"n": changes, "size": size, "file": output})
    if recipients is None:
        return
    click.echo(ngettext("sealed to %(n)d device: %(names)s",
                        "sealed to %(n)d devices: %(names)s", len(recipients))
               % {"n": len(recipients),
                  "names": ", ".join(f"{r.name} ({r.role}, {r.scope or '*'})"
                                     for r in recipients)})


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
            report = _import_here(path, file, store, as_json)
        else:
            report = api.post_bytes(f"/api/bundles?name={quote_segment(file.name)}",
                                    file.read_bytes(), "application/octet-stream")
    if as_json:
        echo_json(report)
    else:
        _print_report(report)
    if report["refused"] or report["invalid"]:  # exit 3: some changes were refused
        sys.exit(3)


def _import_here(path: Path, file: Path, store: str | None, as_json: bool
                 ) -> dict[str, object]:
    """Import ``file`` into the home ``path`` (its lock held); a device that learns its
    own revocation from it is wiped (cli/wipe.py), whether it could open it or not."""
    refused: SealedError | None = None
    report: dict[str, object] = {}
    with open_node(path, store=store) as node, file.open("rb") as f, \
            _progress(_("importing"), not as_json) as progress:
        try:
            report = import_bundle(node, f, source=f"bundle:{file.name}",
                                   progress=progress).to_json()
        except SealedError as exc:
            refused = exc
        evidence = evidence_if_revoked(node, path) if store is None else None
    if evidence is not None:
        report["wiped"] = wipe_revoked(path, evidence, f"bundle {file.name}")
    if refused is not None:
        raise refused
    return report


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
