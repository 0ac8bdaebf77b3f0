"""``meshsync serve`` and ``meshsync sync``: sync over TCP with mutual TLS 1.3."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
import trio
from meshsync.cli.common import (
    PositiveSeconds,
    echo_json,
    errors_to_exit,
    fail,
    home_option,
    json_option,
    resolve_home,
    run_trio,
)
from meshsync.cli.wipe import evidence_if_revoked, wipe_revoked
from meshsync.cli.writer import home_writer

from meshsync.host.i18n import gettext as _
from meshsync.host.i18n import localize, ngettext
from meshsync.host.local import open_node
from meshsync.host.lock import hold_home
from meshsync.model.errors import UsageError
from meshsync.net.endpoints import Endpoint, serve_sync, sync_with
from meshsync.net.errors import TransportError
from meshsync.net.setup import open_endpoint
from meshsync.protocol.events import SessionSummary
from meshsync.replica.node import Node

if TYPE_CHECKING:
    from meshsync.daemon.config import DaemonConfig


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); UsageError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(_("%(text)r: expected HOST:PORT, e.g. 127.0.0.1:7420") % {"text": text})
    return host.strip("[]"), int(port)


def _setup_logging(verbose: bool, quiet: int = logging.WARNING) -> None:
    """Log on stderr: INFO with ``-v``, else from level ``quiet`` (``sync`` passes
    CRITICAL: its outcome is its one ``meshsync: error:`` line)."""
    logging.basicConfig(level=logging.INFO if verbose else quiet, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _checked_home(home: Path | None) -> Path:
    """The home's path, its ``config.toml`` checked by the daemon's rules (an unknown
    or bad key is refused by name here too, not silently ignored)."""
    return _home_config(home)[0]


def _home_config(home: Path | None) -> tuple[Path, DaemonConfig]:
    """The home's path and its ``config.toml`` read and checked by the daemon's rules."""
    from meshsync.daemon.config import load_config

    from meshsync.host.home import Home

    path = resolve_home(home)
    return path, load_config(Home.open(path))


@click.command()
@home_option
@click.option("--listen", default="127.0.0.1:7420", show_default=True, help="HOST:PORT.")
@click.option("-v", "--verbose", is_flag=True, help="Log every session.")
@errors_to_exit
def serve(home: Path | None, listen: str, verbose: bool) -> None:
    """Accept sync sessions until SIGINT or SIGTERM. Holds the home as a daemon does:
    refused while a daemon or another serve runs on it; writing commands are refused
    while it runs (it takes no writes: run `meshsync daemon` for that)."""
    _setup_logging(verbose)
    host, port = parse_hostport(listen)

    async def main() -> None:
        path, config = _home_config(home)
        with hold_home(path, "serve"), open_endpoint(path) as endpoint:
            endpoint.limits = config.limits()  # the daemon's keys and defaults
            async with trio.open_nursery() as nursery:
                try:
                    listeners = await nursery.start(serve_sync, endpoint, host, port)
                except OSError as exc:  # a port in use, an address not on this machine
                    raise UsageError(_("--listen: cannot listen on %(address)s: %(reason)s") % {
                        "address": listen, "reason": exc.strerror or exc}) from exc
                bound = listeners[0].socket.getsockname()
                click.echo(_("serving %(device)s on %(host)s:%(port)s") % {
                    "device": endpoint.node.key.device_id, "host": bound[0], "port": bound[1]},
                           err=True)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _signal in signals:
                        click.echo(_("shutting down"), err=True)
                        nursery.cancel_scope.cancel()
                        break

    run_trio(main)


@click.command()
@home_option
@click.argument("peer", metavar="HOST:PORT")
@click.option("--timeout", type=PositiveSeconds(), default=10.0, show_default=True,
              help="Connect timeout, seconds (positive).")
@click.option("-v", "--verbose", is_flag=True, help="Log the session on stderr.")
@json_option
@errors_to_exit
def sync(home: Path | None, peer: str, timeout: float, verbose: bool, as_json: bool) -> None:
    """Sync once with a peer, both ways (refused while a daemon runs on the home: it
    syncs by itself). Exit 0 when both hold the same for the
    partitions they share, 4 when the session ended but they differ, 1 on errors
    (one `meshsync: error:` line; -v also logs the session)."""
    _setup_logging(verbose, quiet=logging.CRITICAL)
    host, port = parse_hostport(peer)

    held_before: list[int] = []

    async def main() -> dict[str, object]:
        from meshsync.host.clock import clock_json

        path = _checked_home(home)
        with home_writer(path) as api:  # what it receives is written to the home
            if api is not None:
                raise UsageError(_(
                    "a daemon (pid %(pid)s) runs on %(home)s and syncs by itself: give it "
                    "%(peer)s as a static peer, or ask it to sync now (POST /api/sync)")
                    % {"pid": api.pid, "home": path, "peer": peer})
            with open_endpoint(path) as endpoint:
                held_before.append(_changes_held(endpoint.node))
                try:
                    summary = await _sync_drawing(endpoint, host, port, timeout,
                                                  not as_json and sys.stdout.isatty())
                except TransportError as exc:
                    if not as_json:
                        raise
                    summary = SessionSummary(error=str(exc))  # --json: say why in it
                result = {**summary.to_json(), "clock": clock_json(endpoint.node)}
                evidence = evidence_if_revoked(endpoint.node, path)
            if evidence is not None:  # the session brought this device's revocation
                result["wiped"] = wipe_revoked(path, evidence, f"sync with {peer}")
            return result

    try:
        result = run_trio(main)
    except KeyboardInterrupt:
        _interrupted(resolve_home(home), held_before)
        return
    if as_json:
        echo_json(result)
    else:
        click.echo(_sync_line(result))
        for warning in result["clock_warnings"]:  # type: ignore[attr-defined]
            click.echo(_("clock: %(warning)s") % {"warning": warning})
    clock: Any = result.get("clock") or {}
    if clock.get("message"):
        click.echo(_("date: %(message)s") % {"message": clock["message"]}, err=True)
    if result["error"]:
        # stderr even with --json: the JSON on stdout stays parseable, and every
        # failing command prints its one-line reason (README, "Commands").
        reason = localize(cast("str", result["error"]))  # a core Msg: the reader's language
        click.echo(_("meshsync: error: %(message)s") % {
            "message": _("sync failed: %(reason)s") % {"reason": reason}}, err=True)
        sys.exit(1)
    if not result["converged"]:
        sys.exit(4)


async def _sync_drawing(endpoint: Endpoint, host: str, port: int, timeout: float,
                        draw: bool) -> SessionSummary:
    """:func:`sync_with`, drawing its progress on stdout while it runs if ``draw``."""
    if not draw:
        return await sync_with(endpoint, host, port, timeout)
    from meshsync.cli.progress import draw_progress

    def read() -> dict[str, Any] | None:
        flying = next(iter(endpoint.in_flight.values()), None)
        return flying.progress() if flying is not None else None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(draw_progress, read, sys.stdout)
        try:
            return await sync_with(endpoint, host, port, timeout)
        finally:
            nursery.cancel_scope.cancel()


def _sync_line(result: dict[str, Any]) -> str:
    """The one line a finished sync prints."""
    sent = ngettext("sent %(n)d change", "sent %(n)d changes", result["changes_sent"]) % {
        "n": result["changes_sent"]}
    return _("%(sent)s, received %(received)d (%(duplicates)d already held); %(out)d bytes "
             "out, %(in)d in; %(seconds).2f s; converged: %(converged)s") % {
        "sent": sent, "received": result["changes_received"],
        "duplicates": result["duplicates"], "out": result["bytes_sent"],
        "in": result["bytes_received"], "seconds": result["seconds"],
        "converged": _("yes") if result["converged"] else _("no")}


def _changes_held(node: Node) -> int:
    """How many changes ``node`` holds: the sum of its version vector's seqs."""
    return sum(node.version_vector().values())


def _interrupted(home: Path, held_before: list[int]) -> None:
    """Ctrl-C during a sync: say in one line what was stored, exit 130.

    Every frame the sync acknowledged was committed before its acknowledgement, so the
    count read back from the store is exactly what the interrupted session kept.
    """
    if not held_before:
        fail(_("sync interrupted (Ctrl-C) before it started; nothing received"), 130)
        return
    with open_node(home) as node:
        received = _changes_held(node) - held_before[0]
    fail(_("sync interrupted (Ctrl-C); %(n)d changes received and stored before it "
           "(sync again to resume from there)") % {"n": received}, 130)


COMMANDS = [serve, sync]
