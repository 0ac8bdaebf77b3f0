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
sync that converged the delta is empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from meshsync.model import codec
from meshsync.model.change import MAX_SEQ, FeedId, check_partition
from meshsync.model.errors import DecodeError, RemoteError, UsageError
from meshsync.model.identity import PUBLIC_KEY_BYTES, sha256
from meshsync.replica import custody
from meshsync.replica.node import Node
from meshsync.replica.receipt import assemble_receipt, decode_receipt
from meshsync.store.base import FeedInfo, in_prefix

DIGEST_BYTES = 16
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
    return [receipt.at_ms, delta, receipt.sig]


def expand_receipt(item: Any, issuer: bytes, scope: str, base: VersionList) -> bytes:
    """The canonical receipt blob of a compact receipt from ``issuer`` over ``scope``
    (its signature is not checked here); :class:`DecodeError` if malformed."""
    if type(item) is not list or len(item) != 3 or type(item[0]) is not int \
            or type(item[1]) is not list or not isinstance(item[2], bytes):
        raise DecodeError("malformed compact receipt")
    at_ms, delta, sig = item
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
                                {f: s for f, s in vv.items() if s > 0}, sig)
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


def _overlaps(a: str, b: str) -> bool:
    return in_prefix(a, b) or in_prefix(b, a)


@dataclass(frozen=True)
class Holdings:
    """What a node holds over a session's shared scope when the session starts: its
    version vector (sorted), the hash of each feed's head, and the SUMMARY digests
    of feeds, credentials and receipts. The VV message sends this same vector."""

    vv: VersionList
    heads: list[bytes]
    digests: list[bytes]

    @classmethod
    def of(cls, node: Node, scope: str | None) -> Holdings:
        """Take them now (``scope`` None: the scopes are disjoint, nothing is shared)."""
        if scope is None:
            return cls([], [], [b"\x00" * DIGEST_BYTES] * 3)
        infos = _feed_infos(node, scope)
        vv = [(f.feed, f.head_seq) for f in infos]
        meta = MetaExchange(node, scope)
        return cls(vv, [f.head_hash for f in infos],
                   [_feeds_digest(vv), digest(meta.digests(meta.credentials())),
                    digest(meta.digests(meta.receipts()))])


def version_list(node: Node, scope: str | None) -> VersionList:
    """``node``'s version vector over ``scope`` now, sorted."""
    return [] if scope is None else [(f.feed, f.head_seq) for f in _feed_infos(node, scope)]


def final_digest(node: Node, scope: str | None) -> bytes:
    """The FIN digest: feeds and credentials held now. Receipts are left out: they are
    advisory, and one issued at the end of this very session must not make two nodes
    that hold the same changes look different."""
    if scope is None:
        return b"\x00" * DIGEST_BYTES
    meta = MetaExchange(node, scope)
    return digest([_feeds_digest(version_list(node, scope)),
                   digest(meta.digests(meta.credentials()))])


def digest(value: Any) -> bytes:
    """16-byte digest of a msgpack value."""
    return sha256(codec.pack(value))[:DIGEST_BYTES]


def _feed_infos(node: Node, scope: str) -> list[FeedInfo]:
    return sorted((f for f in node.store.feeds()
                   if f.head_seq > 0 and in_prefix(f.partition, scope)),
                  key=lambda f: (f.partition, f.author))


def _feeds_digest(vv: VersionList) -> bytes:
    return digest([[a, p, seq] for (a, p), seq in vv])


class MetaExchange:
    """Credentials and receipts of ``node`` relevant to a session over ``scope``."""

    def __init__(self, node: Node, scope: str | None) -> None:
        self.node, self.scope = node, scope

    def credentials(self) -> list[bytes]:
        """Every credential (certificates and revocations travel everywhere)."""
        return self.node.store.credentials()

    def receipts(self) -> list[bytes]:
        """Receipts whose scope overlaps the session's shared scope."""
        if self.scope is None:
            return []
        out = []
        for blob in self.node.store.receipts():
            try:
                if _overlaps(decode_receipt(blob).scope, self.scope):
                    out.append(blob)
            except RemoteError:
                continue
        return out

    @staticmethod
    def digests(blobs: Iterable[bytes]) -> list[bytes]:
        """Sorted short digests of ``blobs``."""
        return sorted(short_digest(b) for b in blobs)

    @staticmethod
    def missing(blobs: list[bytes], peer_has: set[bytes]) -> list[bytes]:
        """The blobs whose digest the peer did not list."""
        return [b for b in blobs if short_digest(b) not in peer_has]

    def vv_parts(self, held: Holdings, peer_digests: list[bytes]) -> list[Any]:
        """The VV message after its type: version vector, credential digests and
        receipt digests, each nil where ``peer_digests`` shows the peer holds the same."""
        same = [mine == theirs for mine, theirs in zip(held.digests, peer_digests,
                                                       strict=True)]
        return [None if same[0] else encode_vv(held.vv),
                None if same[1] else self.digests(self.credentials()),
                None if same[2] else self.digests(self.receipts())]

    def read_vv_parts(self, parts: list[Any], held: Holdings, peer_digests: list[bytes]
                      ) -> tuple[VersionList, set[bytes], set[bytes]]:
        """The peer's version vector, credential digests and receipt digests from its
        VV message; :class:`DecodeError` if malformed or nil where they differ."""
        assert self.scope is not None
        for part, raw in enumerate(parts):
            if raw is None and peer_digests[part] != held.digests[part]:
                raise DecodeError("version vector message leaves out what differs")
            if raw is not None and type(raw) is not list:
                raise DecodeError("malformed version vector")
        vv, creds, rcpts = parts
        return (held.vv if vv is None else decode_vv(vv, self.scope),
                self._digest_set(creds, self.credentials()),
                self._digest_set(rcpts, self.receipts()))

    def _digest_set(self, raw: list[Any] | None, ours: list[bytes]) -> set[bytes]:
        if raw is None:
            return set(self.digests(ours))
        return {d for d in raw if isinstance(d, bytes)}

    def accept_credentials(self, blobs: list[Any], warnings: list[str]) -> int:
        """Keep new credentials; returns how many were new."""
        new = 0
        for blob in blobs:
            try:
                new += bool(self.node.add_credential(blob))
            except RemoteError as exc:
                warnings.append(f"credential refused: {exc.detail}")
        return new

    def accept_receipts(self, blobs: list[Any], warnings: list[str]) -> int:
        """Keep receipts newer than those held; returns how many were stored."""
        new = 0
        with self.node.store.transaction():
            for blob in blobs:
                try:
                    new += bool(custody.add_receipt(self.node, blob))
                except RemoteError as exc:
                    warnings.append(f"receipt refused: {exc.detail}")
        return new

    def issue(self) -> bytes | None:
        """Issue this node's receipt for the shared scope (gateway and central only)."""
        if self.scope is None:
            return None
        with self.node.store.transaction():
            return custody.issue_receipt(self.node, self.scope)
