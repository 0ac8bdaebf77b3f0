"""Key rotation: a device's key kA1 is replaced by kA2 (docs/failure-cases.md B14).

A rotation is composed of two credentials that already exist, issued together by
one authority and carried together (one file, then every sync and bundle):

* a device **certificate** for the new key with the old certificate's role and
  scope (:func:`issue_rotation` copies them, so the officer keeps the same rights);
* a **revocation** of the old key after ``after_seq`` — the old key's head seq when
  the device stopped using it — so changes the old key signs later (a copied key,
  a thief) are refused everywhere once the rotation is known, while everything it
  signed before stays valid. A peer that missed the rotation learns both from
  whoever has them, like any other credential.

**One number for every feed.** A revocation names one seq for all of a device's
feeds, while seqs count per feed (per partition). A rotation therefore uses the
highest head over the old key's feeds; in a feed whose head is lower, the old key
could still sign seqs up to that number and have them accepted. A Pantarlih phone
writes one TPS partition, so it has one feed and the gap is empty; for a device
writing several partitions the gap is the difference between its feed heads.

A rotation file is the certificate chain PEM followed by the revocation
PEM-armoured (``-----BEGIN MESHSYNC REVOCATION-----``): :func:`rotation_file`
writes it, :func:`split_credentials` reads it back (and any certificate file).

Nothing here reads the clock: ``now`` is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshsync.model.errors import UsageError
from meshsync.model.identity import short_id
from meshsync.trust.grant import NOT_REVOKED, describe_point
from meshsync.trust.issue import (
    DEFAULT_DEVICE_DAYS,
    AuthorityKey,
    issue_device_certificate,
    load_csr,
)
from meshsync.trust.profile import raw_ed25519
from meshsync.trust.revocation import PEM_LABEL, armor, make_revocation, unarmor
from meshsync.trust.store import TrustStore

_REVOCATION_BLOCK = re.compile(
    rb"-----BEGIN " + PEM_LABEL.encode() + rb"-----.*?-----END " + PEM_LABEL.encode()
    + rb"-----\s*", re.DOTALL)


@dataclass(frozen=True)
class Rotation:
    """What :func:`issue_rotation` made.

    ``certificate``: PEM of the new device certificate (leaf only);
    ``revocation``: the raw revocation blob of the old key;
    ``old_key`` / ``new_key``: the 32-byte Ed25519 public keys;
    ``role`` / ``scope``: carried over from the old certificate.
    """

    certificate: bytes
    revocation: bytes
    old_key: bytes
    new_key: bytes
    role: str
    scope: str
    after_seq: int


def split_credentials(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split a credential file into (certificate PEM text, raw revocation blobs).

    ``data``: PEM text with certificates and zero or more PEM-armoured
    revocations, in any order (a plain certificate file gives an empty list).
    The revocations are not verified here: add them to a :class:`TrustStore`.
    Raises :class:`~meshsync.model.errors.AuthorizationError` if an armoured block is
    not base64.
    """
    revocations = [unarmor(m.group(0)) for m in _REVOCATION_BLOCK.finditer(data)]
    return _REVOCATION_BLOCK.sub(b"", data), revocations


def rotation_file(certificate_chain: bytes, revocation: bytes) -> bytes:
    """The file ``authority rotate`` writes: ``certificate_chain`` (PEM: the new
    device certificate, then its chain up to the root), then the armoured revocation."""
    return certificate_chain + armor(revocation)


def csr_device_key(csr_pem: bytes) -> bytes:
    """The 32-byte Ed25519 key of a device certificate request (PEM or DER).

    Raises :class:`UsageError` if the request is malformed, its signature does not
    verify, or it holds another kind of key (e.g. an ``authority request``).
    """
    public = load_csr(csr_pem).public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise UsageError("not a device certificate request (it holds no Ed25519 device key)")
    return raw_ed25519(public)


def carried_certificate(trust: TrustStore, old_key: bytes) -> dict[str, Any]:
    """The certificate of ``old_key`` whose role and scope a rotation carries over.

    Among the certificates ``trust`` has verified for the device, the one valid
    longest (latest ``not_after``); the dict is a :meth:`TrustStore.device_info`
    row. Raises :class:`UsageError` if the device has no verified certificate
    here ("unknown device") or is already revoked (a rotation would cut it off at
    a point it is already cut off before, or not at all).
    """
    verified = [r for r in trust.device_info(old_key) if r["status"] == "verified"]
    if not verified:
        raise UsageError(f"unknown device {short_id(old_key)}: no verified certificate for it "
                         "here (sync with a device that holds it, or give --old-cert)")
    point = trust.revocation_for(old_key)
    if point is not NOT_REVOKED:
        raise UsageError(f"device {short_id(old_key)} is already {describe_point(point)}; "
                         "it cannot be rotated (issue a certificate for the new key with "
                         "`authority issue`)")
    return max(verified, key=lambda r: (r["not_after"], r["not_before"]))


def issue_rotation(
    issuer_key: AuthorityKey,
    issuer_chain_pem: bytes,
    csr_pem: bytes,
    *,
    old_key: bytes,
    role: str,
    scope: str,
    after_seq: int,
    now: datetime,
    days: int = DEFAULT_DEVICE_DAYS,
) -> Rotation:
    """Certify the key in ``csr_pem`` with ``role`` and ``scope`` and revoke ``old_key``
    (32 raw bytes) after ``after_seq`` (int >= 0; seq is per feed, see the module
    docstring), both signed by ``issuer_key`` (its certificate chain PEM first).

    ``now``: an aware datetime (the certificate window starts an hour before it;
    the revocation's time is ``now`` in ms). ``days``: certificate validity.
    Raises :class:`UsageError` if the request holds the old key itself, is not a
    device request, or the issuer may not issue there (scope outside its own,
    expired, key mismatch).
    """
    new_key = csr_device_key(csr_pem)
    if new_key == old_key:
        raise UsageError(f"the request is for device {short_id(old_key)} itself: a rotation "
                         "needs a new key (run `meshsync rekey` on the device)")
    if after_seq < 0:
        raise UsageError("--after-seq must be 0 or more")
    certificate = issue_device_certificate(issuer_key, issuer_chain_pem, csr_pem,
                                           role=role, scope=scope, now=now, days=days)
    revocation = make_revocation(issuer_key, issuer_chain_pem, old_key, after_seq,
                                 int(now.timestamp() * 1000))
    return Rotation(certificate, revocation, old_key, new_key, role, scope, after_seq)


def feed_heads(feeds: Iterable[tuple[bytes, str, int]], author: bytes) -> dict[str, int]:
    """``partition -> head seq`` of ``author``'s feeds among ``(author, partition,
    head_seq)`` triples (a store's feeds), sorted by partition."""
    return dict(sorted((p, seq) for a, p, seq in feeds if a == author))


def signed_after(heads: Mapping[str, int], after_seq: int | None) -> dict[str, tuple[int, int]]:
    """Feeds whose head passes a revocation point: ``partition -> (first, last)`` seqs
    refused. ``after_seq`` None (every change refused) counts from seq 1."""
    first = 1 if after_seq is None else after_seq + 1
    return {p: (first, head) for p, head in heads.items() if head >= first}
