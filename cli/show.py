"""What the read commands print, without click: shared by their click commands
(cli/read.py) and the plain command line that runs ``meshsync get`` without click
(cli/start.py), so both print the same bytes. Also the JSON form every command prints
(cli/common.py ``echo_json``): this module's own imports are kept light for that, and
the store is imported by the functions that read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshsync.host import i18n
from meshsync.host.home import default_home
from meshsync.host.i18n import gettext as _

if TYPE_CHECKING:
    from meshsync.replica.records import Record


def json_text(data: Any) -> str:
    """``data`` as indented JSON with sorted keys (bytes shown as hex), no final newline.

    Raises :class:`TypeError` for a value JSON cannot hold.
    """
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def home_path(home: Path | None) -> Path:
    """The home path chosen by ``--home`` or the environment (its config's ``lang``
    then chooses the language, unless ``--lang`` or ``$MESHSYNC_LANG`` did)."""
    path = home if home is not None else default_home()
    i18n.use_home(path)
    return path


def read_record(home: Path | None, collection: str, key: str,
                partition: str | None) -> Record:
    """The record ``collection/key`` (in ``partition``, else the one partition holding
    it) of the home ``home`` (None: the default home), opened read-only.

    Raises :class:`~meshsync.model.errors.NotFoundError` if it holds no such record
    (or no home is there), :class:`~meshsync.model.errors.UsageError` for a bad
    partition, a key in several partitions, or a home ``open_reader`` refuses.
    """
    from meshsync.host.reading import open_reader
    from meshsync.model.change import check_partition
    from meshsync.model.errors import NotFoundError

    if partition is not None:
        check_partition(partition)
    with open_reader(home_path(home)) as reader:
        record = reader.get(collection, key, partition)
    if record is None:
        raise NotFoundError(_("no record %(collection)s/%(key)s")
                            % {"collection": collection, "key": key})
    return record


def record_text(record: Record, as_json: bool) -> str:
    """``record`` as ``get`` and ``conflicts`` print it (JSON, or one line for the
    record and one per field and conflict), each line ending in a newline."""
    from meshsync.model.values import record_to_json

    if as_json:
        return json_text(record_to_json(record.to_json())) + "\n"
    state = _(" (deleted)") if record.deleted else ""
    lines = [f"{record.collection}/{record.key} [{record.partition}]{state}"]
    for name, value in record.fields.items():
        mark = "  !" if name in record.conflicts else "   "
        lines.append(f"{mark} {name} = {value!r}")
    for name, versions in record.conflicts.items():
        alts = ", ".join(_("%(value)r by %(author)s") % {"value": v.value, "author": v.author[:8]}
                         for v in versions)
        lines.append(_("  conflict %(field)s: %(values)s") % {"field": name, "values": alts})
    return "".join(line + "\n" for line in lines)
