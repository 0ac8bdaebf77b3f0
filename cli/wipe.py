"""``meshsync wipe``, and the wipe a revoked device makes of itself after a sync or a
bundle import brought its revocation (meshsync.host.wipe, docs/architecture.md §6)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from meshsync.cli.common import echo_json, errors_to_exit, home_option, json_option, resolve_home
from meshsync.cli.writer import home_writer

from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.host.local import open_node
from meshsync.host.wipe import Evidence, finish_wipe, revoked_self, write_evidence
from meshsync.model.errors import UsageError
from meshsync.model.text import Msg
from meshsync.replica.node import Node


def evidence_if_revoked(node: Node, path: Path) -> Evidence | None:
    """If ``node`` (open on home ``path``) learned its own revocation: its sealed
    evidence bundle, written now (the wipe itself waits for the store to close:
    :func:`wipe_revoked`). None if it is not revoked."""
    home = Home.open(path)
    if not revoked_self(node, home):
        return None
    return write_evidence(node, home, int(time.time() * 1000))


def wipe_revoked(path: Path, evidence: Evidence, source: str) -> dict[str, object]:
    """Wipe the home ``path`` of a revoked device (its store closed) and say so on
    stderr: what was removed, where its own changes went."""
    record = finish_wipe(Home.open(path), evidence,
                         f"this device's revocation arrived ({source})", int(time.time() * 1000))
    click.echo(_("meshsync: this device has been revoked: its copy of others' data is "
                 "deleted from %(home)s") % {"home": path}, err=True)
    _echo_evidence(evidence)
    return record


def _echo_evidence(evidence: Evidence) -> None:
    if evidence.path is not None:
        click.echo(_("  its own %(n)d changes are kept, sealed for %(who)s, in %(file)s: "
                     "hand this file to the PPK or KPU") % {
            "n": evidence.changes, "file": evidence.path,
            "who": ", ".join(r.name for r in evidence.recipients)}, err=True)
    elif evidence.changes:
        click.echo(_("  its own %(n)d changes could not be kept: no device of the "
                     "authority is known here to seal them to") % {"n": evidence.changes},
                   err=True)


def _confirmed(path: Path) -> bool:
    """The operator's answer; with no answer to read (a script, stdin at its end) a
    UsageError saying to add --yes, never a Ctrl-C nobody pressed."""
    try:
        return click.confirm(_("Delete all voter data in %(home)s?") % {"home": path})
    except click.exceptions.Abort:
        click.echo("", err=True)
        raise UsageError(Msg("nothing was deleted: no answer was given (at the end of "
                             "the input); add --yes to wipe %(home)s", home=path)) from None


@click.command()
@home_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--discard-own", is_flag=True,
              help="Wipe even if the device's own changes cannot be sealed for the "
                   "authority (none of its devices known here): they are lost.")
@json_option
@errors_to_exit
def wipe(home: Path | None, yes: bool, discard_own: bool, as_json: bool) -> None:
    """Delete every voter's data this home holds (store, WAL, logs, backups, bundles in
    clear), keeping its keys, certificates and settings; the device's own changes are
    first sealed for the authority in an evidence bundle. Refused while a daemon runs
    on the home."""
    path = resolve_home(home)
    if not yes and not _confirmed(path):
        raise UsageError(Msg("nothing was deleted"))
    with home_writer(path, wait_s=0) as api:
        if api is not None:
            raise UsageError(Msg("a daemon (pid %(pid)s) runs on %(home)s: stop it first",
                                 pid=api.pid, home=path))
        with open_node(path) as node:
            evidence = write_evidence(node, Home.open(path), int(time.time() * 1000))
        if evidence.path is None and evidence.changes and not discard_own:
            raise UsageError(Msg(
                "nothing was deleted: this device's own %(n)d changes cannot be sealed for "
                "the authority (no central, admin or district laptop known here); sync "
                "first, or give --discard-own", n=evidence.changes))
        record = finish_wipe(Home.open(path), evidence, "meshsync wipe",
                             int(time.time() * 1000))
    if as_json:
        echo_json(record)
        return
    click.echo(_("wiped %(home)s: removed %(files)s") % {
        "home": path, "files": ", ".join(str(f) for f in record["removed"]) or "-"})  # type: ignore[attr-defined]
    _echo_evidence(evidence)


COMMANDS = [wipe]
