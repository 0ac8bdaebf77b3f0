"""Wiping a home: when the device learns its own revocation, or at the operator's
command (``meshsync wipe``; docs/architecture.md §6, "Wipe on revocation").

A revoked phone holds its district's voter list, which nobody may read from it any
more. On learning its revocation (a sync or a bundle import brought it) it:

1. writes its own changes (every feed it authored) into an *evidence bundle* sealed to
   the authority's devices it knows (role ``central`` or ``admin``; else the district
   laptop, role ``gateway``), ``evidence-<device>-<ms>.bundle`` in the home, so what
   the officer recorded is not lost and only the authority can read it;
2. deletes everything else in the home that may hold voters' data: the store and its
   WAL, logs, backups, bundles in clear, runtime files (each file overwritten with
   zeros before it is unlinked, a best effort: flash memory may keep old blocks);
3. writes ``wiped.json`` (when, why, the evidence file, what was removed), which
   ``meshsync status`` reports, and logs a warning.

Kept: the keys, certificates and configuration (no voter data; the revoked key signs
nothing anyone accepts), the evidence bundles and ``wiped.json``. A revoked device that
knows no authority device to seal its changes to still wipes (the voters' data comes
first) and says its own changes were lost; ``meshsync wipe`` refuses then unless given
``--discard-own``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from meshsync.host.files import fsync_dir, replace_file, write_private
from meshsync.host.home import (
    CERT_FILE,
    CONFIG_FILE,
    CSR_FILE,
    KEY_FILE,
    NEXT_CSR_FILE,
    NEXT_KEY_FILE,
    RETIRED_DIR,
    WIPED_FILE,
    Home,
)
from meshsync.model.change import decode_body
from meshsync.model.identity import device_id
from meshsync.protocol.bundle import export_sealed
from meshsync.protocol.recipients import Recipient, eligible
from meshsync.replica.node import Node
from meshsync.trust.grant import NOT_REVOKED

log = logging.getLogger("meshsync.wipe")

EVIDENCE_PREFIX = "evidence-"
#: Files a wipe keeps: keys, certificates, settings, the lock (none holds voter data).
KEEP = frozenset({KEY_FILE, CSR_FILE, CERT_FILE, CONFIG_FILE, NEXT_KEY_FILE, NEXT_CSR_FILE,
                  RETIRED_DIR, "root.crt", "authority.key", "authority.crt",
                  "authority.csr", "daemon.lock", WIPED_FILE})


@dataclass
class Evidence:
    """The sealed evidence bundle of a device's own changes (``path`` None if it had
    none, or no authority device was known to seal it to: ``reason`` says which)."""

    path: Path | None
    changes: int
    recipients: list[Recipient] = field(default_factory=list)
    reason: str = ""


def revoked_self(node: Node, home: Home | None = None) -> bool:
    """True if the node's trust store holds a revocation of the node's own key, and
    (given ``home``) no key rotation waits in it: a rotation revokes the old key, and
    the device may learn that before it enrols its new certificate (``next.key``)."""
    point = getattr(node.trust, "revocation_for", None)
    if point is None or point(node.key.public_key) is NOT_REVOKED:
        return False
    if home is not None and home.next_key_path.exists():
        log.warning("this device's key is revoked, but a key rotation waits in %s: not "
                    "wiping; enrol the new certificate (meshsync enroll)", home.path)
        return False
    return True


def authority_recipients(node: Node, partitions: set[str], now_s: int) -> list[Recipient]:
    """The devices an evidence bundle of ``partitions`` is sealed to: the known central
    and admin devices, else the gateways that may hold them."""
    allowed = eligible(node, partitions, now_s)
    return [r for r in allowed if r.role in ("central", "admin")] or \
        [r for r in allowed if r.role == "gateway"]


def write_evidence(node: Node, home: Home, now_ms: int) -> Evidence:
    """Seal every change the node authored into ``evidence-<id>-<now_ms>.bundle`` in
    ``home`` (0600) for the authority (:func:`authority_recipients`): those its feeds
    hold and those its revocation quarantined (taken back past the revocation point),
    so the officer's work after the point is not lost either."""
    own = node.key.public_key
    vv = node.version_vector()
    taken_back = sorted((decode_body(q.body, q.sig) for q in node.store.quarantined()
                         if q.author == own), key=lambda c: (c.partition, c.seq))
    changes = sum(seq for (author, _), seq in vv.items() if author == own) + len(taken_back)
    if changes == 0:
        return Evidence(None, 0, reason="no changes of its own")
    partitions = {p for (author, p) in vv if author == own} | {c.partition for c in taken_back}
    recipients = authority_recipients(node, partitions, now_ms // 1000)
    if not recipients:
        return Evidence(None, changes, reason="no device of the authority known here")
    path = home.path / f"{EVIDENCE_PREFIX}{device_id(own)[:8]}-{now_ms}.bundle"
    part = path.with_name(path.name + ".part")
    write_private(part, b"")
    with part.open("wb") as f:
        since = {feed: seq for feed, seq in vv.items() if feed[0] != own}
        export_sealed(node, f, [r.key for r in recipients], since=since, extra=taken_back)
        f.flush()
        os.fsync(f.fileno())
    part.replace(path)
    return Evidence(path, changes, recipients)


def _shred(path: Path) -> None:
    """Overwrite ``path`` with zeros, fsync, unlink (best effort on flash)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(b"\0" * n)
                left -= n
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        pass
    path.unlink(missing_ok=True)


def wipe_files(home: Home) -> list[str]:
    """Remove every file and folder of ``home`` but :data:`KEEP` and evidence bundles;
    returns their names. The store must be closed."""
    removed = []
    for entry in sorted(home.path.iterdir()):
        name = entry.name
        if name in KEEP or (name.startswith(EVIDENCE_PREFIX) and name.endswith(".bundle")):
            continue
        if entry.is_dir() and not entry.is_symlink():
            for sub in sorted(entry.rglob("*"), reverse=True):
                if sub.is_file() and not sub.is_symlink():
                    _shred(sub)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            _shred(entry)
        removed.append(name)
    fsync_dir(home.path)
    return removed


def finish_wipe(home: Home, evidence: Evidence, reason: str, now_ms: int) -> dict[str, object]:
    """Delete the home's data (:func:`wipe_files`) and record it in ``wiped.json``;
    returns what was recorded. The store must be closed."""
    removed = wipe_files(home)
    record: dict[str, object] = {
        "wiped_ms": now_ms, "reason": reason, "removed": removed,
        "evidence": str(evidence.path) if evidence.path else None,
        "own_changes": evidence.changes,
        "evidence_for": [r.to_json() for r in evidence.recipients],
        "evidence_missing": evidence.reason or None,
    }
    replace_file(home.path / WIPED_FILE, json.dumps(record, indent=1).encode())
    log.warning("home %s wiped (%s): removed %s; own changes: %d, evidence %s",
                home.path, reason, ", ".join(removed) or "nothing", evidence.changes,
                evidence.path or evidence.reason)
    return record


def wiped_record(home_path: Path) -> dict[str, object] | None:
    """The ``wiped.json`` of the home at ``home_path``, or None."""
    try:
        data = json.loads((home_path / WIPED_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = ["Evidence", "authority_recipients", "finish_wipe", "revoked_self", "wipe_files",
           "wiped_record", "write_evidence"]
