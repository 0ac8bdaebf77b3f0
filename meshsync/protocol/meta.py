"""What travels beside changes in a session: version vectors, credentials and
custody receipts, in their compact session forms.

**Version vector** (VV message): ``[authors, entries, checks]`` where ``authors``
lists each 32-byte key once and ``entries`` is one flat array of four values per feed,
``author index, shared, suffix, seq``: the feed's partition is the first ``shared``
characters of the previous entry's partition followed by ``suffix`` (front coding;
the first entry has none before it). Entries are sorted by ``(partition, author)``,
strictly, so both ends index a list the same way, and every partition lies in the
shared scope. A sender of changes names a feed of this list by its index
(:mod:`meshsync.protocol.stream`). ``checks`` is one byte string: per entry, in order,
the first :data:`VV_CHECK` (4) bytes of the hash of the sender's change at that seq
(its head). Where both sides list the same seq of a feed but different checks, they
hold different changes at their head (a fork: :func:`forked_feeds`); each then sends
the other its head change with a full feed item, and the receiver keeps the fork's
evidence. The SUMMARY and FIN digests of feeds cover each head's full hash, so two
nodes that hold different changes at the same seq are never "converged".

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

Receipts of version 3 carry a head check per feed (8 bytes of the hash of the issuer's
change at that seq). The compact form sends a check only where the delta changes an
entry (``[i, seq, check]``, ``[author, partition, seq, check]``; ``[i, 0]`` has none):
for an entry it leaves alone, the receiver fills in the check of the change *it*
holds at that seq, or received in this session (:func:`expand_receipt`). When the
issuer holds another change there (a fork at the head seq), the rebuilt receipt does
not verify and is refused with a warning: never counted for a change it does not
hold. A receipt without checks (versions 1 and 2) is sent as
``[at_ms, delta, sig, refusals, false]``.
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
from meshsync.replica.receipt import (
    assemble_receipt,
    decode_receipt,
    decode_refused,
    head_check,
)
from meshsync.store.base import in_prefix

#: Bytes of each feed's head hash a VV message carries.
VV_CHECK = 4

VersionList = list[tuple[FeedId, int]]
"""A version vector as a list sorted by :func:`feed_order`: ``[(feed, seq), ...]``."""


def feed_order(entry: tuple[FeedId, int]) -> tuple[str, bytes]:
    """Sort key of VV entries and receipt bases: partition, then author."""
    return (entry[0][1], entry[0][0])


def encode_vv(entries: VersionList, heads: list[bytes]) -> list[Any]:
    """``[authors, flat entries, checks]`` of a sorted version vector and the head hash
    of each of its feeds (see module docs)."""
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
    return [list(authors), flat, b"".join(head[:VV_CHECK] for head in heads)]


def decode_vv(raw: Any, scope: str) -> tuple[VersionList, list[bytes]]:
    """The version vector of a VV message and its head checks (:data:`VV_CHECK` bytes
    per entry); :class:`DecodeError` if malformed, out of order or outside ``scope``."""
    if type(raw) is not list or len(raw) != 3 or type(raw[0]) is not list \
            or type(raw[1]) is not list or len(raw[1]) % 4 or not isinstance(raw[2], bytes) \
            or len(raw[2]) != len(raw[1]) // 4 * VV_CHECK:
        raise DecodeError("malformed version vector")
    authors, flat, checks = raw
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
    return out, [checks[i:i + VV_CHECK] for i in range(0, len(checks), VV_CHECK)]


def forked_feeds(held: Holdings, peer: VersionList, peer_checks: list[bytes]) -> list[FeedId]:
    """The feeds whose head seq both sides hold but whose head changes differ (their
    :data:`VV_CHECK`-byte checks): a fork at the head that no seq comparison shows."""
    ours = {feed: (seq, head[:VV_CHECK])
            for (feed, seq), head in zip(held.vv, held.heads, strict=True)}
    return [feed for (feed, seq), check in zip(peer, peer_checks, strict=True)
            if ours.get(feed, (0, check))[0] == seq and ours[feed][1] != check]


def receipt_base(*vvs: dict[FeedId, int]) -> VersionList:
    """Per feed, the highest seq in any of ``vvs``, sorted (see module docs)."""
    base: dict[FeedId, int] = {}
    for vv in vvs:
        for feed, seq in vv.items():
            base[feed] = max(seq, base.get(feed, 0))
    return sorted(base.items(), key=feed_order)


def compact_receipt(blob: bytes, base: VersionList) -> list[Any]:
    """``[at_ms, delta, sig]`` (``[at_ms, delta, sig, refusals]``) of this node's own
    receipt ``blob`` against ``base``; a receipt without head checks (version 1 or 2)
    gains a fifth element ``false`` (see module docs)."""
    receipt = decode_receipt(blob)
    checks = receipt.checks if receipt.checked else None
    delta: list[list[Any]] = []
    for i, (feed, seq) in enumerate(base):
        held = receipt.vv.get(feed, 0)
        if held != seq:
            delta.append([i, held, checks[feed]] if checks and held else [i, held])
    known = dict(base)
    for feed, seq in sorted(receipt.vv.items(), key=feed_order):
        if feed not in known:
            delta.append([feed[0], feed[1], seq, *([checks[feed]] if checks else [])])
    refused = [r.encode() for r in receipt.refused]
    if checks is None:
        return [receipt.at_ms, delta, receipt.sig, refused, False]
    if refused:
        return [receipt.at_ms, delta, receipt.sig, refused]
    return [receipt.at_ms, delta, receipt.sig]


def expand_receipt(item: Any, issuer: bytes, scope: str, base: VersionList,
                   expected: list[bytes | None] | None = None) -> bytes:
    """The canonical receipt blob of a compact receipt from ``issuer`` over ``scope``
    (its signature is not checked here); :class:`DecodeError` if malformed.
    ``expected`` holds, per ``base`` entry, the head check (8 bytes) of the change this
    side holds or received at that seq (None where it has none): the check of an
    entry the delta leaves alone. One that differs from the issuer's (a fork at that
    seq) makes the rebuilt receipt fail its signature."""
    if type(item) is not list or len(item) not in (3, 4, 5) or type(item[0]) is not int \
            or type(item[1]) is not list or not isinstance(item[2], bytes) \
            or (len(item) == 5 and item[4] is not False):
        raise DecodeError("malformed compact receipt")
    at_ms, delta, sig = item[:3]
    refused = decode_refused(item[3]) if len(item) >= 4 else ()
    checked = len(item) < 5
    vv, checks = _apply_delta(delta, base, checked)
    vv = {f: s for f, s in vv.items() if s > 0}
    if checked:
        wanted = expected if expected is not None else [None] * len(base)
        for (feed, _seq), check in zip(base, wanted, strict=True):
            if feed in vv and feed not in checks:
                if check is None:
                    raise DecodeError("compact receipt names a seq this side cannot check")
                checks[feed] = check
    try:
        return assemble_receipt(issuer, scope, at_ms, vv, sig, refused,
                                checks if checked else None)
    except (OverflowError, ValueError, TypeError) as exc:
        raise DecodeError(f"malformed compact receipt: {exc}") from exc


def _apply_delta(delta: list[Any], base: VersionList, checked: bool
                 ) -> tuple[dict[FeedId, int], dict[FeedId, bytes]]:
    """The vector (and the checks the delta states) of ``base`` changed by ``delta``."""
    vv, checks = dict(base), {}
    touched: set[FeedId] = set()
    for entry in delta:
        if type(entry) is not list or not entry:
            raise DecodeError("malformed compact receipt entry")
        check = entry[-1] if checked and len(entry) in (3, 4) else None
        plain = entry[:-1] if check is not None else entry
        if len(plain) == 2 and type(plain[0]) is int and 0 <= plain[0] < len(base) \
                and type(plain[1]) is int and plain[1] >= 0:
            feed, seq = base[plain[0]][0], plain[1]
        elif len(plain) == 3 and isinstance(plain[0], bytes) and type(plain[1]) is str \
                and type(plain[2]) is int and plain[2] > 0 and (plain[0], plain[1]) not in vv:
            feed, seq = (plain[0], plain[1]), plain[2]
        else:
            raise DecodeError("malformed compact receipt entry")
        if feed in touched or (checked and seq > 0) != (check is not None):
            raise DecodeError("compact receipt names a feed twice or misses a check")
        touched.add(feed)
        vv[feed] = seq
        if check is not None:
            checks[feed] = check
    return vv, checks


def expected_checks(base: VersionList, held: Holdings,
                    received: dict[FeedId, tuple[int, bytes]]) -> list[bytes | None]:
    """Per ``base`` entry, the head check of the change this side has at that seq: the
    last one ``received`` in the session (feed -> (seq, hash)) if at that seq, else its
    own head when it held that seq at the start (``held``), else None."""
    own = {feed: (seq, head) for (feed, seq), head in zip(held.vv, held.heads, strict=True)}
    out: list[bytes | None] = []
    for feed, seq in base:
        got, mine = received.get(feed), own.get(feed)
        hash_ = got[1] if got and got[0] == seq else mine[1] if mine and mine[0] == seq else None
        out.append(head_check(hash_) if hash_ else None)
    return out


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
                   [feeds_digest(vv, heads), digest(digests(credentials)),
                    digest(digests(receipts))])


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
    ``credentials`` here: the seqs of :func:`offered_vv` and the credentials either side
    offered (docs/protocol.md, "Converged"). It covers seqs, not head hashes: a seq
    below this side's head has no hash in the session's hands; a fork at a head seq is
    found by the VV checks instead (:func:`forked_feeds`)."""
    offered = peer_credentials | set(digests(held.credentials))
    kept = [d for d in digests(credentials) if d in offered]
    capped = offered_vv(held, peer_vv, vv)
    return digest([digest([[a, p, seq] for (a, p), seq in capped]), digest(kept)])


def digest(value: Any) -> bytes:
    """16-byte digest of a msgpack value."""
    return sha256(codec.pack(value))[:DIGEST_BYTES]


def feeds_digest(vv: VersionList, heads: list[bytes]) -> bytes:
    """The SUMMARY digest of a sorted version vector and the (full) hash of each feed's
    head: equal only when both sides hold the same changes, not just the same seqs."""
    return digest([[a, p, seq, head] for ((a, p), seq), head in zip(vv, heads, strict=True)])


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
    return (None if same[0] else encode_vv(held.vv, held.heads),
            None if same[1] else list(digests(held.credentials)),
            None if same[2] else list(digests(held.receipts)))


def read_vv_parts(parts: tuple[list[Any] | None, ...], held: Holdings,
                  peer_digests: tuple[bytes, ...], scope: str
                  ) -> tuple[VersionList, list[bytes], set[bytes], set[bytes]]:
    """The peer's version vector and head checks, credential digests and receipt
    digests from its VV message; :class:`DecodeError` if malformed or nil where they
    differ."""
    for part, raw in enumerate(parts):
        if raw is None and peer_digests[part] != held.digests[part]:
            raise DecodeError("version vector message leaves out what differs")
    vv, creds, rcpts = parts
    peer_vv, checks = ((held.vv, [h[:VV_CHECK] for h in held.heads]) if vv is None
                       else decode_vv(vv, scope))
    return (peer_vv, checks, _digest_set(creds, held.credentials),
            _digest_set(rcpts, held.receipts))


def _digest_set(raw: list[Any] | None, ours: list[bytes]) -> set[bytes]:
    if raw is None:
        return set(digests(ours))
    return {d for d in raw if isinstance(d, bytes)}
