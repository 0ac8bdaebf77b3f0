"""``meshsync daemon``, ``meshsync status`` and ``meshsync peers``."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any

import click
from meshsync.cli.common import (
    echo_json,
    errors_to_exit,
    home_option,
    json_option,
    resolve_home,
    run_trio,
)

from meshsync.host import i18n
from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.model.errors import MeshsyncError, UsageError


@click.command()
@home_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Config file [default: HOME/config.toml].")
@click.option("--listen", default=None, help="Sync listener HOST:PORT (overrides config).")
@click.option("--api", default=None, help="Local API HOST:PORT on loopback (overrides config).")
@click.option("--mesh", default=None, help="Mesh id (overrides config).")
@click.option("--static-peer", "static_peers", multiple=True, metavar="HOST:PORT",
              help="A peer to dial (repeatable; replaces config static_peers).")
@click.option("--discovery", default=None, metavar="M1,M2",
              help="Discovery methods: mdns,broadcast,gateway,static.")
@click.option("--uplink", "uplinks", default=None, metavar="HOST:PORT[,HOST:PORT…]",
              help="Gateway: central server(s) to forward to whenever reachable.")
@click.option("--role", type=click.Choice(["pantarlih", "gateway", "central", "admin"]),
              default=None, help="Expected role (checked against the certificate).")
@click.option("--store", default=None, metavar="postgresql://…",
              help="Central: keep data in PostgreSQL instead of the home's SQLite file.")
@click.option("-v", "--verbose", is_flag=True, help="Log every session.")
@errors_to_exit
def daemon(home: Path | None, config_file: Path | None, listen: str | None, api: str | None,
           mesh: str | None, static_peers: tuple[str, ...], discovery: str | None,
           uplinks: str | None, role: str | None, store: str | None, verbose: bool) -> None:
    """Run the node: sync listener, discovery, peer manager, local API and status page,
    until SIGINT or SIGTERM."""
    from meshsync.daemon.config import load_config
    from meshsync.daemon.runner import run_daemon

    path = resolve_home(home)
    overrides: dict[str, Any] = {
        "listen": listen, "api": api, "mesh": mesh,
        "static_peers": list(static_peers) or None,
        "discovery": discovery.split(",") if discovery else None,
        "uplink": uplinks.split(",") if uplinks else None,
    }
    config = load_config(Home.open(path), config_file, overrides)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line on stderr once it listens, with or without -v: the device id and where
    # to reach it (the logs stay quiet without -v).
    announce = functools.partial(click.echo, err=True)
    run_trio(functools.partial(run_daemon, path, config, store=store, role=role,
                               announce=announce))


def api_get(home: Path, route: str) -> Any | None:
    """GET ``route`` from the home's running daemon; None if no daemon runs (or it
    does not answer)."""
    from meshsync.cli.writer import running_daemon

    api = running_daemon(home)
    if api is None:
        return None
    try:
        return api.call("GET", route, timeout=5)
    except MeshsyncError:
        return None


def _wiped_line(wiped: dict[str, Any]) -> str:
    """What ``status`` says of a wiped home."""
    return _("this device's data was wiped (%(reason)s); its own changes: %(evidence)s") % {
        "reason": wiped.get("reason"),
        "evidence": wiped.get("evidence") or wiped.get("evidence_missing") or "-"}


def _offline_status(path: Path) -> dict[str, Any]:
    from meshsync.host.clock import clock_json
    from meshsync.host.local import open_node
    from meshsync.host.reserve import storage_status
    from meshsync.replica.custody import custody

    with open_node(path) as node:
        feeds = node.store.feeds()
        return {"device_id": node.key.device_id, "daemon": "not running",
                "changes": sum(f.head_seq for f in feeds),
                "conflicts": len(node.conflicts()), "diagnosis": "offline", "peers": 0,
                "custody": custody(node), "storage": storage_status(node),
                "clock": clock_json(node)}


@click.command()
@home_option
@json_option
@errors_to_exit
def status(home: Path | None, as_json: bool) -> None:
    """Show the node's status (from the running daemon, else from the store)."""
    path = resolve_home(home)
    Home.open(path)
    from meshsync.host import atrest
    from meshsync.host.wipe import wiped_record

    wiped = wiped_record(path)
    if wiped is not None:  # a wiped home is never opened again (Home.check_not_wiped)
        data: dict[str, Any] = {"wiped": wiped, "encrypted": atrest.is_encrypted(path)}
        if as_json:
            echo_json(data)
        else:
            click.echo(_wiped_line(wiped))
        return
    data = api_get(path, "/api/status") or _offline_status(path)
    data["encrypted"] = atrest.is_encrypted(path)  # the store at rest (init --encrypt)
    if as_json:
        echo_json(data)
        return
    click.echo(_("device %(device_id)s: %(diagnosis)s; %(peers)s peers; %(changes)s "
                 "changes; %(conflicts)s conflicts") % {**data, "diagnosis": _diagnosis(data)})
    clock = data.get("clock") or {}
    if clock.get("message"):
        click.echo(_("date: %(message)s") % {"message": clock["message"]})
    for warning in data.get("clock_warnings", []):
        click.echo(_("clock: %(warning)s") % {"warning": warning})
    storage = data.get("storage")
    if storage and storage["low"]:
        click.echo(_("storage low: %(free_mb)s MiB free, %(reserve_mb)s MiB kept for local "
                     "edits; received changes are refused until space is freed") % storage)
    _echo_custody(data.get("custody", {}))


def _echo_custody(held: dict[str, Any]) -> None:
    """The custody lines of ``meshsync status``: each own feed, then each change refused
    upstream (:func:`meshsync.replica.refusals.describe`)."""
    from meshsync.replica.refusals import describe

    for feed in held.get("feeds", []):
        if feed.get("central_refused"):
            safe = _("%(n)s refused at central, listed below") % {"n": feed["central_refused"]}
        else:
            safe = _("safe at central") if feed["safe_at_central"] else _("not yet at central")
        click.echo(_("  %(partition)s: %(local)s here, %(gateway)s at the gateway, "
                     "%(central)s at central (%(safe)s)") % {**feed, "safe": safe})
    refused = held.get("refused", [])
    if refused:
        click.echo(_("refused upstream (%(n)d): these edits did not make it")
                   % {"n": len(refused)})
    for entry in refused:
        click.echo(f"  {i18n.localize(describe(entry))}")


def _diagnosis(data: dict[str, Any]) -> str:
    """The diagnosis as the reader reads it: the daemon's one word in English (as the
    API gives it), the status page's sentence in another language."""
    from meshsync.daemon.status_page import DIAGNOSES

    word = str(data["diagnosis"])
    return word if i18n.current() == "en" else i18n.gettext(DIAGNOSES.get(word, word))


@click.command()
@home_option
@json_option
@errors_to_exit
def peers(home: Path | None, as_json: bool) -> None:
    """List the peers the running daemon knows."""
    path = resolve_home(home)
    Home.open(path)
    data = api_get(path, "/api/peers")
    if data is None:
        raise UsageError(_("no daemon is running on %(home)s (start: meshsync daemon --home "
                           "%(home)s)") % {"home": path})
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo(_("no peers found yet"))
    for p in data:
        addresses = ", ".join(f"{a['host']}:{a['port']}" for a in p["addresses"])
        synced = _("synced %(n)dx") % {"n": p["sessions_ok"]}
        click.echo(f"{(p['device_id'] or '?')[:16]}\t{p['role'] or '-'}\t{addresses}\t"
                   f"{synced}\t{p['last_error'] or _('ok')}")


COMMANDS = [daemon, status, peers]
