"""``meshsync schema`` and ``meshsync authority schema publish``: signed schema documents.

A collection's rules are a document the root authority signs
(:mod:`meshsync.trust.schemadoc`); it travels like certificates and revocations: in
the files ``authority delegate`` and ``authority issue`` write (so a device has it
from ``enroll``), and with every sync and bundle. Every device validates with the
newest version it holds (:mod:`meshsync.replica.schema`)::

    kpu$  meshsync authority schema publish --home KPU coklit      # version 1
    kpu$  meshsync authority schema publish --home KPU coklit      # later: version 2
    any$  meshsync schema --home PHONE1 --json                     # versions held
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from meshsync.cli.common import echo_json, errors_to_exit, home_option, json_option, resolve_home

from meshsync.host.i18n import gettext as _
from meshsync.model.errors import UsageError
from meshsync.trust.schemadoc import SchemaBook, armor, make_schema


def held_book(home: Path) -> SchemaBook | None:
    """The schema documents the node at ``home`` holds (None: not enrolled)."""
    from meshsync.host.local import open_node

    with open_node(home) as node:
        book = getattr(node.trust, "schemas", None)
    return book if isinstance(book, SchemaBook) else None


def schema_blocks(home: Path) -> bytes:
    """Every schema document ``home`` holds, PEM-armoured, for a credential file
    (nothing if ``home`` is an authority folder that is no node home)."""
    from meshsync.model.errors import NotFoundError

    try:
        book = held_book(home)
    except NotFoundError:
        return b""
    return b"".join(armor(blob) for blob in book.blobs()) if book else b""


def _rows(book: SchemaBook | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for collection in book.collections() if book else []:
        docs = book.versions(collection) if book else []
        rows += [{**doc.to_json(), "newest": doc is docs[-1]} for doc in docs]
    return rows


@click.command("schema")
@home_option
@json_option
@errors_to_exit
def schema(home: Path | None, as_json: bool) -> None:
    """Show the signed schema versions this node holds; the newest of each
    collection judges every edit."""
    rows = _rows(held_book(resolve_home(home)))
    if as_json:
        echo_json({"schemas": rows})
        return
    if not rows:
        click.echo(_("No schema document is held: edits are checked only by a schema "
                     "named in config.toml, if any."))
    for row in rows:
        line = (_("%(collection)s v%(version)s (in use): signed by %(issuer)s at %(signed)s")
                if row["newest"] else
                _("%(collection)s v%(version)s: signed by %(issuer)s at %(signed)s"))
        click.echo(line % {k: row[k] for k in ("collection", "version", "issuer", "signed")})


@click.group("schema")
def schema_group() -> None:
    """Publish a collection's rules as a signed, versioned schema document (root only)."""


def _document(name: str, source: Path | None) -> dict[str, Any]:
    """``{"collection", "body"}`` from a JSON file or the installed package ``name``."""
    if source is not None:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{source}: not a readable JSON schema document: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
            raise UsageError(f"{source}: a schema document is a JSON object with "
                             "\"collection\" and \"body\"")
        return {**data, "collection": data.get("collection", name)}
    from meshsync.host.local import schema_package

    package = schema_package(name)
    if package is None:
        raise UsageError(f"no schema package {name!r} is installed (entry point group "
                         "meshsync.schema_packages)")
    return package.document()


@schema_group.command("publish")
@home_option
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(1, 2**63 - 1),
              help="Version number (default: one more than the newest held).")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False,
                                                  path_type=Path),
              help="Sign this JSON document ({\"collection\", \"body\"}) instead of the "
                   "installed package's.")
@json_option
@errors_to_exit
def publish(home: Path | None, name: str, version: int | None, source: Path | None,
            as_json: bool) -> None:
    """Sign the schema of package NAME (e.g. coklit) at the root authority HOME.

    It is stored in HOME, goes into every file `authority delegate` and `authority
    issue` write from then on, and travels with every sync and bundle.
    """
    from meshsync.cli.authority import _load_authority, _store_credentials

    path = resolve_home(home)
    key, chain = _load_authority(path)
    doc = _document(name, source)
    from meshsync.replica.schema import body_problem

    problem = body_problem(doc["body"])
    if problem:
        raise UsageError(f"the schema document for {name!r} is malformed: {problem}")
    book = held_book(path)
    newest = book.newest(str(doc["collection"])) if book else None
    held = newest.version if newest else 0
    if version is not None and version <= held:
        raise UsageError(f"{path} already holds {doc['collection']} v{held}; publish "
                         f"a version above {held}")
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    blob = make_schema(key, chain, str(doc["collection"]), version or held + 1,
                       doc["body"], at_ms)
    _store_credentials(path, [blob])
    row = {"collection": doc["collection"], "version": version or held + 1,
           "home": str(path)}
    if as_json:
        echo_json(row)
    else:
        click.echo(f"published {row['collection']} v{row['version']} in {path}")


COMMANDS: list[click.Command] = [schema]
