"""Commands on one node: init, put, delete, log (the read commands get, ls and
conflicts are in cli/read.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from meshsync.cli.common import (
    echo_json,
    errors_to_exit,
    home_option,
    json_option,
    record_arguments,
    resolve_home,
)
from meshsync.cli.writer import home_writer, quote_segment

from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.host.local import open_node
from meshsync.model.change import Change, Put, check_partition, decode_stored
from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id
from meshsync.model.values import parse_assignments, record_to_json, value_to_json
from meshsync.store.base import QuarantinedChange


def _write_csr(home: Home, name: str) -> bool:
    try:
        from meshsync.trust import make_csr
    except ImportError:  # trust support not installed in this build
        return False
    home.csr_path.write_bytes(make_csr(home.load_key(), name))
    return True


@click.command()
@home_option
@click.option("--partition", default=None,
              help="Default partition for local edits, e.g. mimika/jila/diloa/tps-003.")
@click.option("--name", default=None, help="Device name for the certificate request.")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the store with a key unlocked by a passphrase (asked twice, "
                   "or --passphrase-file, or $MESHSYNC_PASSPHRASE); needs the "
                   "'encrypted' extra (sqlcipher3).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --encrypt: read the passphrase from this file's "
                                 "first line.")
@json_option
@errors_to_exit
def init(home: Path | None, partition: str | None, name: str | None, encrypt: bool,
         passphrase_file: Path | None, as_json: bool) -> None:
    """Create a node home with a new Ed25519 device key; print the device id."""
    if partition is not None:
        check_partition(partition)
    path = resolve_home(home)
    passphrase = _new_passphrase(passphrase_file) if encrypt else None
    created = Home.create(path, partition=partition)
    if passphrase is not None:
        _encrypt_home(created, passphrase)
    key = created.load_key()
    csr = _write_csr(created, name or f"meshsync-{key.device_id[:8]}")
    info = {"device_id": key.device_id, "home": str(path),
            "partition": created.default_partition(), "encrypted": encrypt,
            "csr": str(created.csr_path) if csr else None}
    if as_json:
        echo_json(info)
    else:
        click.echo(key.device_id)


def _new_passphrase(passphrase_file: Path | None) -> str:
    """The new home's passphrase: from the file, the environment, else asked twice on
    the terminal. Checks first that SQLCipher is installed (StorageError says how)."""
    from meshsync.host import atrest
    from meshsync.store.sqlite_connect import cipher_driver

    cipher_driver()
    if passphrase_file is not None:
        given: str | None = atrest.read_passphrase_file(passphrase_file)
    else:
        given = atrest.passphrase_from_env()
    if given is None:
        if not sys.stdin.isatty():
            raise UsageError(_("--encrypt needs a passphrase: run it on a terminal, or "
                               "give --passphrase-file or MESHSYNC_PASSPHRASE"))
        given = str(click.prompt(_("New passphrase"), hide_input=True, err=True,
                                 confirmation_prompt=_("Repeat the passphrase")))
    atrest.check_passphrase(given)
    return given


def _encrypt_home(home: Home, passphrase: str) -> None:
    """Write the wrapped data key and create the store encrypted (so no clear store is
    ever made in this home)."""
    from meshsync.host import atrest
    from meshsync.store.sqlite import SQLiteStore

    key = atrest.create(home.path, passphrase=passphrase)
    SQLiteStore(home.store_path, key).close()


@click.command()
@home_option
@click.argument("collection")
@click.argument("key")
@click.argument("assignments", nargs=-1, metavar="FIELD=VALUE...")
@click.option("--partition", default=None,
              help="Partition [default: the record's, else the home's].")
@json_option
@errors_to_exit
def put(home: Path | None, collection: str, key: str, assignments: tuple[str, ...],
        partition: str | None, as_json: bool) -> None:
    """Set fields of a record. FIELD=text stores text; FIELD:=JSON stores a number,
    true/false, null, a list or a map (e.g. age:=42, ok:=true, note:=null), or bytes
    as foto:='{"$bytes": "BASE64"}'. Duplicate keys, NaN and Infinity are refused.
    While a daemon runs on the home the edit goes through it (and on to its peers)."""
    fields = parse_assignments(assignments)
    if partition is not None:
        check_partition(partition)
    path = resolve_home(home)
    shown: object
    with home_writer(path) as api:
        if api is None:
            with open_node(path) as node:
                change = node.put(collection, key, fields, partition)
                record = node.get(collection, key, change.partition)
            done = _change_json(change)
            shown = record_to_json(record.to_json()) if record else None
        else:
            body = {"fields": {k: value_to_json(v) for k, v in fields.items()},
                    "partition": partition}
            done = api.call_json("PUT", _record_route(collection, key), body)
            shown = done.pop("record", None)
    if as_json:
        echo_json({"change": done, "record": shown})
    else:
        click.echo(_("saved %(collection)s/%(key)s in %(partition)s (seq %(seq)s)") % {
            "collection": collection, "key": key, "partition": done["partition"],
            "seq": done["seq"]})


def _change_json(change: Change) -> dict[str, object]:
    """What ``put`` and ``delete`` print of the change they made (as the API answers)."""
    return {"author": device_id(change.author), "partition": change.partition,
            "seq": change.seq, "hash": change.hash.hex()}


def _record_route(collection: str, key: str, partition: str | None = None) -> str:
    """The API path of one record (``?partition=`` when given)."""
    route = f"/api/records/{quote_segment(collection)}/{quote_segment(key)}"
    return route + (f"?partition={quote_segment(partition)}" if partition else "")


@click.command()
@home_option
@record_arguments
@json_option
@errors_to_exit
def delete(home: Path | None, collection: str, key: str, partition: str | None,
           as_json: bool) -> None:
    """Delete a record (a tombstone that never expires); through the daemon while one
    runs on the home."""
    if partition is not None:
        check_partition(partition)
    path = resolve_home(home)
    with home_writer(path) as api:
        if api is None:
            with open_node(path) as node:
                done = _change_json(node.delete(collection, key, partition))
        else:
            done = api.call_json("DELETE", _record_route(collection, key, partition))
    if as_json:
        echo_json(done)
    else:
        click.echo(_("deleted %(collection)s/%(key)s in %(partition)s (seq %(seq)s)") % {
            "collection": collection, "key": key, "partition": done["partition"],
            "seq": done["seq"]})


def _quarantined_json(q: QuarantinedChange) -> dict[str, Any]:
    """A quarantined change with its ops: what the revoked key wrote."""
    change = decode_stored(q.body, q.sig, q.hash)
    ops = [{"op": "put", "collection": op.collection, "key": op.key,
            "fields": {k: value_to_json(v) for k, v in op.fields.items()}}
           if isinstance(op, Put) else
           {"op": "delete", "collection": op.collection, "key": op.key}
           for op in change.ops]
    return {"author": device_id(q.author), "partition": q.partition, "seq": q.seq,
            "hash": q.hash.hex(), "hlc": change.hlc, "reason": q.reason, "ops": ops,
            "body": q.body.hex(), "sig": q.sig.hex()}


#: Refused changes ``meshsync log`` lists as text (``--json`` lists all).
LOG_LINES = 20


def _log_data(node: Any) -> dict[str, Any]:
    store = node.store
    return {
        "device_id": node.key.device_id,
        "feeds": [{"author": device_id(f.author), "partition": f.partition,
                   "seq": f.head_seq, "head": f.head_hash.hex()} for f in store.feeds()],
        "forks": [{"author": device_id(e.author), "partition": e.partition, "seq": e.seq,
                   "held_hash": e.held_hash.hex(), "other_body": e.other_body.hex(),
                   "other_sig": e.other_sig.hex(), "note": e.note} for e in store.forks()],
        "refusals": [{"author": device_id(r.author), "partition": r.partition, "seq": r.seq,
                      "stage": r.stage, "reason": r.reason, "source": r.source}
                     for r in store.refusals()],
        "quarantined": [_quarantined_json(q) for q in store.quarantined()],
    }


@click.command()
@home_option
@json_option
@errors_to_exit
def log(home: Path | None, as_json: bool) -> None:
    """Show feeds (author, partition, seq), fork evidence, refused changes and the
    changes quarantined when a revocation was learned (what a revoked key wrote)."""
    with open_node(resolve_home(home)) as node:
        data = _log_data(node)
    if as_json:
        echo_json(data)
        return
    click.echo(_("device %(id)s") % {"id": data["device_id"]})
    click.echo(_("feeds:"))
    for f in data["feeds"]:
        mine = _(" (this device)") if f["author"] == data["device_id"] else ""
        click.echo(f"  {f['author'][:8]} {f['partition']} seq {f['seq']}{mine}")
    click.echo(_("forks: %(n)d") % {"n": len(data["forks"])})
    for e in data["forks"]:
        click.echo(f"  FORK {e['author'][:8]} {e['partition']} seq {e['seq']}: {e['note']}")
    click.echo(_("refused changes: %(n)d") % {"n": len(data["refusals"])})
    for r in data["refusals"][:LOG_LINES]:
        click.echo(f"  {r['author'][:8]} {r['partition']} seq {r['seq']} [{r['stage']}] "
                   f"{r['reason']}")
    if len(data["refusals"]) > LOG_LINES:
        click.echo(f"  … and {len(data['refusals']) - LOG_LINES} more (all with --json)")
    shown = data["quarantined"][:20]
    more = len(data["quarantined"]) - len(shown)
    click.echo(_("quarantined changes: %(n)d") % {"n": len(data["quarantined"])}
               + (_(" (the first %(n)d; --json lists all)") % {"n": len(shown)} if more else ""))
    for q in shown:
        ops = ", ".join(f"{o['op']} {o['collection']}/{o['key']}"
                        + (f" ({', '.join(o['fields'])})" if o["op"] == "put" else "")
                        for o in q["ops"])
        click.echo(f"  {q['author'][:8]} {q['partition']} seq {q['seq']}: {ops}")


COMMANDS = [init, put, delete, log]
