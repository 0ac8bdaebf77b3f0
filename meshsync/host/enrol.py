"""Enrolment and key rotation on a home: what ``meshsync enroll`` and ``meshsync rekey``
write, callable by the CLI (holding the home's lock) and by the running daemon (its
local API), so that one process writes a home at a time (docs/architecture.md §9).

* :func:`enrol` installs a device certificate (``device.crt``, ``root.crt``) and stores
  the credentials that came with it; a certificate for the key ``rekey`` made switches
  the device to that key (docs/failure-cases.md B14).
* :func:`start_rekey` makes the new key and its request and reports the old key's heads.

Both take the node whose store they write (the daemon's), or open one on the home.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from meshsync.host.files import replace_file
from meshsync.host.home import Home
from meshsync.host.local import ROOT_FILE, open_node
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import DeviceKey, device_id, short_id
from meshsync.model.text import Msg
from meshsync.replica.node import Node
from meshsync.store.base import Store
from meshsync.trust import (
    NOT_REVOKED,
    CertInfo,
    TrustStore,
    make_csr,
    parse_blob,
    split_credentials,
)
from meshsync.trust.grant import describe_point
from meshsync.trust.profile import NOT_PEM, to_pem
from meshsync.trust.rotation import feed_heads, signed_after
from meshsync.trust.schemadoc import split_schemas
from meshsync.trust.scope import check_scope


@dataclass
class Enrolment:
    """What :func:`enrol` did: ``data`` (what ``enroll`` prints), ``warnings`` (one line
    each, for stderr) and ``new_key`` (the device key it switched to, or None)."""

    data: dict[str, object]
    warnings: list[str] = field(default_factory=list)
    new_key: DeviceKey | None = None


def read_credentials(data: bytes, name: str) -> tuple[list[CertInfo], bytes, list[bytes]]:
    """(parsed certificates, their PEM text, raw revocations) of the credential file
    ``data`` called ``name`` (schema documents in it are left out: :func:`read_schemas`);
    UsageError naming it if it holds no certificate."""
    try:
        pem, revocations = split_credentials(split_schemas(data)[0])
        return parse_blob(pem), pem, revocations
    except AuthorizationError as exc:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise UsageError(Msg("not a PEM certificate: %(name)s", name=name)) from None
        if exc.detail.startswith(NOT_PEM):
            raise UsageError(f"{name} is {exc.detail}") from None
        raise UsageError(f"{name}: {exc.detail}") from None


def read_schemas(data: bytes, name: str) -> list[bytes]:
    """The signed schema documents in the credential file ``data`` called ``name``
    (``authority delegate`` and ``issue`` append the authority's); UsageError naming
    it if one is malformed."""
    try:
        return split_schemas(data)[1]
    except AuthorizationError as exc:
        raise UsageError(f"{name}: {exc.detail}") from None


def check_cert_scope(info: CertInfo, name: str) -> None:
    """UsageError naming ``name`` unless ``info`` (a device or sub-authority
    certificate) has a scope its verifiers can use: a partition prefix, empty
    only for a central or admin device."""
    scope = info.scope or ""
    try:
        check_scope(scope)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None
    if scope == "" and (info.is_ca or info.role not in ("central", "admin")):
        raise UsageError(f"{name}: scope '' (every partition) is only for the central and "
                         f"admin roles, not {info.describe()}")


def checked_root(home: Path, infos: list[CertInfo]) -> CertInfo:
    """The root ending ``infos``; UsageError unless it matches the home's root.crt (if
    there is one) or if the chain has no root."""
    roots = [i for i in infos if i.is_root]
    if not roots:
        raise UsageError(Msg("the certificate file lacks its root (expected the whole chain)"))
    trusted = _installed_root(home / ROOT_FILE)
    if trusted is not None and trusted.der != roots[0].der:
        raise UsageError(Msg(
            "certificate chain ends at authority %(root)r, but this home trusts "
            "%(trusted)r (%(file)s)", root=roots[0].name, trusted=trusted.name,
            file=ROOT_FILE))
    return roots[0]


def _installed_root(path: Path) -> CertInfo | None:
    """The root certificate installed at ``path``; None if there is none, or if it is
    unreadable (damaged: enrolling again installs it anew)."""
    try:
        return parse_blob(path.read_bytes())[0]
    except (OSError, AuthorizationError, IndexError):
        return None


def cert_data(info: CertInfo, issuer: str, output: Path | None) -> dict[str, object]:
    """What the commands print about a certificate (``file``: where it was written;
    ``may_issue``: the roles a sub-authority may issue)."""
    may_issue = ",".join(info.may_issue) if info.is_ca and not info.is_root else None
    return {**info.to_json(issuer), "may_issue": may_issue, "file": str(output) if output else None}


@contextlib.contextmanager
def _node_of(home: Home, node: Node | None) -> Iterator[Node]:
    """``node`` if given (the daemon's), else a node opened on ``home`` for the block."""
    if node is not None:
        yield node
        return
    with open_node(home.path) as opened:
        yield opened


def heads_of(store: Store, author: bytes) -> dict[str, int]:
    """``partition -> head seq`` of ``author``'s feeds held in ``store``."""
    return feed_heads(((f.author, f.partition, f.head_seq) for f in store.feeds()), author)


def describe_spans(spans: dict[str, tuple[int, int]]) -> str:
    """``seq 4..6 in P, seq 2 in Q``: ranges of seqs per partition, for messages."""
    return ", ".join(f"seq {a}..{b} in {p}" if a != b else f"seq {a} in {p}"
                     for p, (a, b) in spans.items())


def enrol(home: Home, data: bytes, name: str, node: Node | None = None) -> Enrolment:
    """Install the device certificate file ``data`` (called ``name`` in messages): the
    device certificate, its chain up to the root, and any revocations (``authority
    rotate`` adds one). ``node``: the running node whose store to write, else one is
    opened on ``home``.

    The certificate must be for the home's device key, or for the key waiting in
    ``next.key`` (then the device switches to it: :func:`enrol_rotation`). Raises
    :class:`UsageError` (one line naming the problem) for another device's
    certificate, a bad scope, a chain ending at another root or missing a link.
    """
    infos, pem, revocations = read_credentials(data, name)
    leaf = infos[0]
    own = home.load_key().public_key
    waiting = home.load_next_key()
    rotating = waiting is not None and leaf.device_key == waiting.public_key != own
    if leaf.device_key != own and not rotating:
        other = device_id(leaf.device_key) if leaf.device_key else leaf.describe()
        also = (Msg(" nor its new key %(id)s (rekey)", id=waiting.device_id) if waiting
                else "")
        raise UsageError(Msg("%(name)s is for device %(other)s, not this device %(own)s%(also)s",
                             name=name, other=other, own=device_id(own), also=also))
    check_cert_scope(leaf, name)
    root = checked_root(home.path, infos)
    trust = TrustStore([to_pem([root])])
    trust.add(pem)
    for blob in revocations:
        trust.add(blob)
    row = next((r for r in trust.device_info(leaf.device_key or b"")
                if r["status"] == "verified"), None)
    if row is None:
        raise UsageError(Msg("%(name)s lacks the sub-authority certificate that issued it",
                             name=name))
    if rotating:
        return enrol_rotation(home, infos, revocations, row["issuer"], name, node)
    replace_file(home.cert_path, to_pem(infos))
    replace_file(home.path / ROOT_FILE, to_pem([root]))
    with _node_of(home, node) as target:
        for blob in [i.der for i in infos if not i.is_root] + revocations \
                + read_schemas(data, name):
            target.add_credential(blob)
    return Enrolment({**cert_data(leaf, row["issuer"], home.cert_path), "stored": True})


def enrol_rotation(home: Home, chain: list[CertInfo], revocations: list[bytes],
                   issuer: str, name: str, node: Node | None = None) -> Enrolment:
    """Enrol the certificate for the waiting ``next.key``: switch keys.

    ``chain``: the new device certificate then its chain up to the root (verified by
    the caller); ``revocations``: raw revocation blobs that came with it. Stores them
    (in ``node``'s store, else one opened on ``home``), then
    :meth:`Home.promote_next_key`. Warns if the old key is not revoked, or signed
    changes past the rotation point (storing the revocation quarantines them; they
    are refused everywhere the rotation is known). The caller holds the home (its
    lock, or it is the daemon holding it) and, with ``node``, switches it to
    :attr:`Enrolment.new_key`.
    """
    old = home.load_key()
    with _node_of(home, node) as target:
        # Heads before the revocation is stored: storing it quarantines the old
        # key's changes past the point, and those are the ones to warn about.
        heads = heads_of(target.store, old.public_key)
        for blob in [i.der for i in chain if not i.is_root] + revocations:
            target.add_credential(blob)
        trust = target.trust
        point = (trust.revocation_for(old.public_key) if isinstance(trust, TrustStore)
                 else NOT_REVOKED)
    retired = home.promote_next_key(to_pem(chain))
    late = {} if point is NOT_REVOKED else signed_after(heads, point)
    warnings = []
    if point is NOT_REVOKED:
        warnings.append(f"the old key {short_id(old.public_key)} is not revoked: what it "
                        "signs stays valid (if it may have been copied, ask the authority "
                        "to revoke it)")
    elif late:
        warnings.append(f"the old key signed {describe_spans(late)} after the rotation "
                        f"point ({describe_point(point)}): those changes are quarantined "
                        "here and refused everywhere the rotation is known; make those "
                        "edits again (meshsync log lists them)")
    data: dict[str, object] = {
        **cert_data(chain[0], issuer, home.cert_path),
        "rotated_from": old.device_id,
        "old_key_heads": heads,
        "old_key": describe_point(point),
        "signed_after_rotation": {p: list(span) for p, span in late.items()},
        "retired_key": str(retired),
        "certificate_file": name,
        "stored": True,
    }
    return Enrolment(data, warnings, home.load_key())


def start_rekey(home: Home, name: str | None, node: Node | None = None) -> dict[str, object]:
    """Start a key rotation on ``home``: the new key ``next.key`` (0600, made unless one
    is waiting) and its request ``next.csr`` (named ``name``, default the current
    certificate's name). Returns the old and new device ids, whether the key was made
    now, the files, the old key's head seq per partition (from ``node``'s store, else
    one opened on ``home``) and the highest (``after_seq``).

    Raises :class:`UsageError` if the home is not enrolled, or ``next.key`` holds the
    current device key.
    """
    if not home.cert_path.exists() or not (home.path / ROOT_FILE).exists():
        raise UsageError(f"{home.path} is not enrolled (no device.crt): there is no "
                         "certificate to rotate; enrol it first (meshsync enroll)")
    old = home.load_key()
    new, created = home.make_next_key()
    if new.public_key == old.public_key:  # a hand-copied file: refuse to go on
        raise UsageError(f"{home.next_key_path} holds the current device key")
    csr_name = name or parse_blob(home.cert_path.read_bytes())[0].name
    replace_file(home.next_csr_path, make_csr(new, csr_name))
    with _node_of(home, node) as target:
        heads = heads_of(target.store, old.public_key)
    return {
        "old_device_id": old.device_id,
        "new_device_id": new.device_id,
        "created": created,
        "key": str(home.next_key_path),
        "csr": str(home.next_csr_path),
        "heads": heads,
        "after_seq": max(heads.values(), default=0),
    }

