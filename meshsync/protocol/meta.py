"""What travels beside changes in a session: version vectors, credentials and
custody receipts, in their compact session forms.

**Version vector** (VV message): ``[authors, entries]`` where ``authors`` lists each
32-byte key once and ``entries`` is one flat array of four values per feed,
``author index, shared, suffix, seq``: the feed's partition is the first ``shared``
characters of the previous entry's partition followed by ``suffix`` (front coding;
the first entry has none before it). Entries are sorted by ``(partition, author)``,
strictly, so both ends index a list the same way, and every partition lies in the
shared scope. A sender of changes names a feed of this list by its index
(:mod:`meshsync.protocol.stream`).

**Credentials and receipts** are exchanged the same way: each side lists short
digests of what it holds (in the VV message; ``nil`` when the SUMMARY showed both
sides hold the same set), then sends the blobs the other lacks. A credential or
receipt the receiver refuses is reported in the session summary, never fatal: they
are relayed data, and one bad blob must not stop the changes behind it.

**A receipt issued at the end of the session** (gateways and central) is sent as
``[at_ms, delta, sig]``: issuer (the peer), scope (the shared scope) and version
vector are what the receiver already knows. The vector is the *base* (for each
feed in either side's VV message, the higher seq) changed by ``delta``: ``[i, seq]``
sets base entry ``i`` (sorted like VV entries; seq 0 = not held) and
``[author, partition, seq]`` adds a feed the base lacks. The receiver rebuilds the
canonical receipt blob (:mod:`meshsync.replica.receipt`) and verifies its signature. After a
sync that converged the delta is empty. A receipt that lists refusals (version 2) is
sent as ``[at_ms, delta, sig, refusals]``, the refusals in full as in the receipt; one
without refusals stays three elements, so a session with no refusal sends no more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from meshsync.model import codec
from meshsync.model.change import MAX_SEQ, FeedId, check_partition
from meshsync.model.errors import DecodeError, UsageError
from meshsync.model.identity import PUBLIC_KEY_BYTES, sha256
from meshsync.protocol.messages import DIGEST_BYTES
from meshsync.replica.receipt import assemble_receipt, decode_receipt, decode_refused
from meshsync.store.base import in_prefix

VersionList = list[tuple[FeedId, int]]
"""A version vector as a list sorted by :func:`feed_order`: ``[(feed, seq), ...]``."""


def feed_order(entry: tuple[FeedId, int]) -> tuple[str, bytes]:
    """Sort key of VV entries and receipt bases: partition, then author."""
    return (entry[0][1], entry[0][0])


def encode_vv(entries: VersionList) -> list[Any]:
    """``[authors, flat entries]`` of a sorted version vector (see module docs)."""
    authors: dict[bytes, int] = {}
    flat: list[Any] = []
    last = ""
    for (author, partition), seq in entries:
        shared = 0
        for x, y in zip(last, partition, strict=False):
            if x != y:
                break
            shared += 1
        flat += [authors.setdefault(author, len(authors)), shared, partition[shared:], seq]
        last = partition
    return [list(authors), flat]


def decode_vv(raw: Any, scope: str) -> VersionList:
    """The version vector of a VV message; :class:`DecodeError` if malformed, out of
    order or outside ``scope``."""
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not list \
            or type(raw[1]) is not list or len(raw[1]) % 4:
        raise DecodeError("malformed version vector")
    authors, flat = raw
    if not all(isinstance(a, bytes) and len(a) == PUBLIC_KEY_BYTES for a in authors):
        raise DecodeError("malformed version vector authors")
    out: VersionList = []
    last: tuple[str, bytes] | None = None
    for at in range(0, len(flat), 4):
        index, shared, suffix, seq = flat[at:at + 4]
        prefix = out[-1][0][1] if out else ""
        if type(index) is not int or not 0 <= index < len(authors) \
                or type(shared) is not int or not 0 <= shared <= len(prefix) \
                or type(suffix) is not str or type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise DecodeError("malformed version vector entry")
        partition = prefix[:shared] + suffix
        try:
            check_partition(partition)
        except UsageError as exc:
            raise DecodeError(f"malformed version vector entry: {exc}") from exc
        if not in_prefix(partition, scope):
            raise DecodeError(f"version vector entry {partition} outside the shared scope")
        key = (partition, authors[index])
        if last is not None and key <= last:
            raise DecodeError("version vector entries out of order")
        last = key
        out.append(((authors[index], partition), seq))
    return out


def receipt_base(*vvs: dict[FeedId, int]) -> VersionList:
    """Per feed, the highest seq in any of ``vvs``, sorted (see module docs)."""
    base: dict[FeedId, int] = {}
    for vv in vvs:
        for feed, seq in vv.items():
            base[feed] = max(seq, base.get(feed, 0))
    return sorted(base.items(), key=feed_order)


def compact_receipt(blob: bytes, base: VersionList) -> list[Any]:
    """``[at_ms, delta, sig]`` of this node's own receipt ``blob`` against ``base``."""
    receipt = decode_receipt(blob)
    delta: list[list[Any]] = []
    for i, (feed, seq) in enumerate(base):
        held = receipt.vv.get(feed, 0)
        if held != seq:
            delta.append([i, held])
    known = dict(base)
    for feed, seq in sorted(receipt.vv.items(), key=feed_order):
        if feed not in known:
            delta.append([feed[0], feed[1], seq])
    if receipt.refused:
        return [receipt.at_ms, delta, receipt.sig, [r.encode() for r in receipt.refused]]
    return [receipt.at_ms, delta, receipt.sig]


def expand_receipt(item: Any, issuer: bytes, scope: str, base: VersionList) -> bytes:
    """The canonical receipt blob of a compact receipt from ``issuer`` over ``scope``
    (its signature is not checked here); :class:`DecodeError` if malformed."""
    if type(item) is not list or len(item) not in (3, 4) or type(item[0]) is not int \
            or type(item[1]) is not list or not isinstance(item[2], bytes):
        raise DecodeError("malformed compact receipt")
    at_ms, delta, sig = item[:3]
    refused = decode_refused(item[3]) if len(item) == 4 else ()
    vv = dict(base)
    touched: set[FeedId] = set()
    for entry in delta:
        if type(entry) is list and len(entry) == 2 and type(entry[0]) is int \
                and 0 <= entry[0] < len(base) and type(entry[1]) is int and entry[1] >= 0:
            feed, seq = base[entry[0]][0], entry[1]
        elif type(entry) is list and len(entry) == 3 and isinstance(entry[0], bytes) \
                and type(entry[1]) is str and type(entry[2]) is int and entry[2] > 0 \
                and (entry[0], entry[1]) not in vv:
            feed, seq = (entry[0], entry[1]), entry[2]
        else:
            raise DecodeError("malformed compact receipt entry")
        if feed in touched:
            raise DecodeError("compact receipt names a feed twice")
        touched.add(feed)
        vv[feed] = seq
    try:
        return assemble_receipt(issuer, scope, at_ms,
                                {f: s for f, s in vv.items() if s > 0}, sig, refused)
    except (OverflowError, ValueError, TypeError) as exc:
        raise DecodeError(f"malformed compact receipt: {exc}") from exc


def short_digest(blob: bytes) -> bytes:
    """The 16-byte digest a peer uses to say it holds ``blob``."""
    return sha256(blob)[:DIGEST_BYTES]


def shared_scope(a: str, b: str) -> str | None:
    """The partition prefix both scopes contain, or None if they are disjoint."""
    if in_prefix(a, b):
        return a
    if in_prefix(b, a):
        return b
    return None


def overlaps(a: str, b: str) -> bool:
    """True if one scope contains the other."""
    return in_prefix(a, b) or in_prefix(b, a)


@dataclass(frozen=True)
class Holdings:
    """What a node holds over a session's shared scope when the session starts: its
    version vector (sorted), the hash of each feed's head, its credentials and the
    receipts whose scope overlaps the shared scope (blobs), and the SUMMARY digests of
    feeds, credentials and receipts. The VV message sends this same vector. Plain
    data: the session's owner reads it from its node
    (:func:`meshsync.protocol.peer.holdings`)."""

    vv: VersionList
    heads: list[bytes]
    credentials: list[bytes]
    receipts: list[bytes]
    digests: list[bytes]

    @classmethod
    def empty(cls) -> Holdings:
        """Nothing shared (the scopes are disjoint)."""
        return cls([], [], [], [], [b"\x00" * DIGEST_BYTES] * 3)

    @classmethod
    def build(cls, vv: VersionList, heads: list[bytes], credentials: list[bytes],
              receipts: list[bytes]) -> Holdings:
        """Holdings of these feeds (``vv`` sorted by :func:`feed_order`, ``heads`` the
        head hash of each), credentials and receipts, with their digests."""
        return cls(vv, heads, credentials, receipts,
                   [feeds_digest(vv), digest(digests(credentials)),
                    digest(digests(receipts))])


def final_digest(vv: VersionList, credentials: list[bytes]) -> bytes:
    """The FIN digest of the feeds (``vv``, sorted) and credentials held now. Receipts
    are left out: they are advisory, and one issued at the end of this very session
    must not make two nodes that hold the same changes look different."""
    return digest([feeds_digest(vv), digest(digests(credentials))])


def offered_vv(held: Holdings, peer_vv: dict[FeedId, int], vv: VersionList) -> VersionList:
    """What this side holds now (``vv``) of what the two sides offered at the start of a
    session (docs/protocol.md, "Converged"): each feed of either start VV (``held.vv``,
    ``peer_vv``) capped at the higher of the two seqs, sorted, feeds at 0 left out.
    What a third node wrote meanwhile (a concurrent session) is beyond the offer."""
    offered = dict(peer_vv)
    for feed, seq in held.vv:
        offered[feed] = max(seq, offered.get(feed, 0))
    now = dict(vv)
    capped = ((feed, min(now.get(feed, 0), top)) for feed, top in offered.items())
    return sorted((entry for entry in capped if entry[1] > 0), key=feed_order)


def fin_digest(held: Holdings, peer_vv: dict[FeedId, int], peer_credentials: set[bytes],
               vv: VersionList, credentials: list[bytes]) -> bytes:
    """The FIN digest of a session that started with ``held`` here and ``peer_vv``,
    ``peer_credentials`` (short digests) at the peer, and ends with ``vv`` and
    ``credentials`` here: :func:`final_digest` of :func:`offered_vv` and of the
    credentials either side offered. With nothing written meanwhile it is
    :func:`final_digest` itself (a peer of an earlier release agrees with it then)."""
    offered = peer_credentials | set(digests(held.credentials))
    kept = [d for d in digests(credentials) if d in offered]
    return digest([feeds_digest(offered_vv(held, peer_vv, vv)), digest(kept)])


def digest(value: Any) -> bytes:
    """16-byte digest of a msgpack value."""
    return sha256(codec.pack(value))[:DIGEST_BYTES]


def feeds_digest(vv: VersionList) -> bytes:
    """The SUMMARY digest of a sorted version vector."""
    return digest([[a, p, seq] for (a, p), seq in vv])


def digests(blobs: Iterable[bytes]) -> list[bytes]:
    """Sorted short digests of ``blobs``."""
    return sorted(short_digest(b) for b in blobs)


def missing(blobs: list[bytes], peer_has: set[bytes]) -> list[bytes]:
    """The blobs whose digest the peer did not list."""
    return [b for b in blobs if short_digest(b) not in peer_has]


def vv_parts(held: Holdings, peer_digests: tuple[bytes, ...]
             ) -> tuple[list[Any] | None, list[Any] | None, list[Any] | None]:
    """The VV message's parts: version vector, credential digests and receipt digests,
    each None where ``peer_digests`` (its SUMMARY) shows the peer holds the same."""
    same = [mine == theirs for mine, theirs in zip(held.digests, peer_digests, strict=True)]
    return (None if same[0] else encode_vv(held.vv),
            None if same[1] else list(digests(held.credentials)),
            None if same[2] else list(digests(held.receipts)))


def read_vv_parts(parts: tuple[list[Any] | None, ...], held: Holdings,
                  peer_digests: tuple[bytes, ...], scope: str
                  ) -> tuple[VersionList, set[bytes], set[bytes]]:
    """The peer's version vector, credential digests and receipt digests from its VV
    message; :class:`DecodeError` if malformed or nil where they differ."""
    for part, raw in enumerate(parts):
        if raw is None and peer_digests[part] != held.digests[part]:
            raise DecodeError("version vector message leaves out what differs")
    vv, creds, rcpts = parts
    return (held.vv if vv is None else decode_vv(vv, scope),
            _digest_set(creds, held.credentials), _digest_set(rcpts, held.receipts))


def _digest_set(raw: list[Any] | None, ours: list[bytes]) -> set[bytes]:
    if raw is None:
        return set(digests(ours))
    return {d for d in raw if isinstance(d, bytes)}
