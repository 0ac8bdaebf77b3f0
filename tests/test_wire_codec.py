"""Canonical bodies and the compact wire form.

Modules: meshsync.model.codec, meshsync.model.change, meshsync.protocol.wire.

Round trips must be byte-exact (B19: values stored and signed exactly as typed), and
garbage from a peer may only ever raise :class:`DecodeError` (as h11 does).
"""

from __future__ import annotations

import contextlib
import math
import struct
import threading
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import msgpack
import pytest
from helpers import Device, all_changes, device_key, sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsync.model import codec
from meshsync.model.change import (
    Change,
    Put,
    canonical_put,
    decode_body,
    encode_body,
    sign_change,
)
from meshsync.model.errors import DecodeError, SignatureError, UsageError
from meshsync.model.limits import MAX_ITEM_BYTES
from meshsync.protocol.wire import WireDecoder, WireEncoder

# Generation time is measured in wall time; a loaded CI machine must not fail it.
SLOW_OK = [HealthCheck.too_slow]

MakeDevice = Callable[..., Device]
PART = "mimika/jila/tps-001"

APOSTROPHES = {  # B19: three keyboards, three code points, three distinct voters
    "v-0027": "Ma'ruf Contoh",
    "v-2019": "Ma\u2019ruf Contoh",
    "v-02bc": "Ma\u02bcruf Contoh",
}
NFD_NAME = unicodedata.normalize("NFD", "Maria Ánggrek Pé")  # decomposed accents
TRICKY_VALUES: dict[str, Any] = {
    "nfd": NFD_NAME,
    "bytes": b"\x00\xff\x80MSEND",
    "float": 0.1,
    "neg_zero": -0.0,
    "big_float": 1.7976931348623157e308,
    "inf": math.inf,
    "nan": math.nan,
    "int_max": 2**64 - 1,
    "int_min": -(2**63),
    "nested": {"z": [1, {"b": b"", "a": None}], "a": [[], {}, True, 2.5]},
    "empty": "",
}


def wire_roundtrip(changes: Iterable[Change]) -> list[Change]:
    """Encode a stream, carry every item through msgpack bytes, decode it."""
    encoder, decoder = WireEncoder(), WireDecoder()
    out = []
    for change in changes:
        for item in encoder.encode(change):
            data = codec.pack(item)
            decoded = decoder.decode(codec.unpack(data, max_bytes=MAX_ITEM_BYTES))
            if decoded is not None:
                out.append(decoded)
    return out


def assert_same(got: list[Change], want: list[Change]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.body == w.body  # byte-exact, so NaN and -0.0 compare too
        assert g.sig == w.sig
        assert g.hash == w.hash
        assert (g.author, g.partition, g.seq, g.prev, g.hlc) == (
            w.author, w.partition, w.seq, w.prev, w.hlc)
        g.verify()


@pytest.fixture
def mesh(make_device: MakeDevice) -> list[Device]:
    """Three devices with cross-author preds, deletes, multi-op changes and odd values."""
    a, b, c = (make_device(n) for n in ("phone-A", "phone-B", "laptop-GW"))
    for key, name in APOSTROPHES.items():
        a.put("voters", key, {"nama": name, "lahir": 1980})
    sync(a, b)
    a.put("voters", "v-0027", {"status": "pindah"})
    b.put("voters", "v-0027", {"status": "ms", "extra": TRICKY_VALUES})
    b.delete("voters", "v-2019")
    sync(a, b)
    c.write(PART, [("put", "voters", "v-9", {"nama": "Yosina", "keluarga": ""}),
                   ("put", "voters", "v-0027", {"rt": "03"}),
                   ("put", "kk", "k-1", {"anggota": ["v-9", "v-0027"]})])
    b.put("voters", "v-0027", {"status": "tidak ditemukan"}, partition="mimika/jila/tps-002")
    sync(b, c)
    sync(a, c)
    return [a, b, c]


# -- round trips ---------------------------------------------------------------------------


def test_wire_round_trip_is_byte_exact(mesh: list[Device]) -> None:
    changes = all_changes(mesh[2])
    assert len({c.author for c in changes}) == 3
    assert any(len(c.ops) == 3 for c in changes)
    assert any(p[1] != c.author for c in changes for op in c.ops for p in op.pred)
    assert_same(wire_roundtrip(changes), changes)


def test_wire_round_trip_of_interleaved_and_partial_feeds(mesh: list[Device]) -> None:
    changes = all_changes(mesh[2])
    # Feeds interleaved change by change, one feed with a hole: sections restart.
    by_feed: dict[Any, list[Change]] = {}
    for change in changes:
        by_feed.setdefault(change.feed, []).append(change)
    chains = list(by_feed.values())
    interleaved = [chain[i] for i in range(max(map(len, chains))) for chain in chains
                   if i < len(chain)]
    holey = [c for c in interleaved if c.seq != 2]
    assert_same(wire_roundtrip(interleaved), interleaved)
    assert_same(wire_roundtrip(holey), holey)


def test_decode_body_round_trips_every_change(mesh: list[Device]) -> None:
    changes = all_changes(mesh[2])
    assert_same([decode_body(c.body, c.sig) for c in changes], changes)
    plain = [c for c in changes if b"nan" not in c.body]  # NaN != NaN: compare the rest
    assert plain
    assert [decode_body(c.body, c.sig) for c in plain] == plain


def test_names_and_values_are_kept_exactly_as_typed(mesh: list[Device]) -> None:
    gw = mesh[2]  # a SQLite-backed receiver would store the same bytes: see below
    for key, name in APOSTROPHES.items():
        record = gw.get("voters", key, partition=PART)
        assert record is not None
        if key != "v-2019":  # deleted on B
            assert record.fields["nama"].encode() == name.encode()
    extra = gw.get("voters", "v-0027", partition=PART).fields["extra"]  # type: ignore[union-attr]
    assert extra["nfd"] == NFD_NAME != unicodedata.normalize("NFC", NFD_NAME)
    assert extra["bytes"] == TRICKY_VALUES["bytes"]
    assert math.isnan(extra["nan"])
    assert math.copysign(1, extra["neg_zero"]) == -1
    assert extra["int_max"] == 2**64 - 1
    assert extra["nested"] == TRICKY_VALUES["nested"]


def test_sqlite_receiver_stores_bodies_and_names_byte_exact(mesh: list[Device],
                                                            make_device: MakeDevice) -> None:
    store_side = make_device("server", "sqlite")
    sent = all_changes(mesh[2])
    store_side.receive(wire_roundtrip(sent))
    assert_same(all_changes(store_side), sent)
    names = {r.key: r.fields["nama"] for r in store_side.records("voters", PART)}
    assert names == {"v-0027": APOSTROPHES["v-0027"], "v-02bc": APOSTROPHES["v-02bc"],
                     "v-9": "Yosina"}
    assert store_side.canonical_state() == mesh[2].canonical_state()


def test_float_is_always_float64() -> None:
    key = device_key("phone-A")
    change = sign_change(key, PART, 1, b"", 1, (canonical_put("c", "k", {"f": 1.5}),))
    assert b"\xcb" + struct.pack(">d", 1.5) in change.body


VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10)
NAME = st.text(min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(fields=st.lists(st.dictionaries(NAME, VALUE, min_size=1, max_size=4), min_size=1,
                       max_size=4),
       hlc=st.integers(0, 2**62), pred_hlcs=st.lists(st.integers(0, 2**62), max_size=3))
def test_random_values_round_trip(fields: list[dict[str, Any]], hlc: int,
                                  pred_hlcs: list[int]) -> None:
    key, other = device_key("phone-A"), device_key("phone-B").public_key
    pred = tuple((h, other) for h in pred_hlcs)
    changes, prev = [], b""
    for seq, f in enumerate(fields, start=1):
        op = canonical_put("voters", f"v-{seq}", f, pred)
        change = sign_change(key, PART, seq, prev, hlc + seq * 10, (op,))
        changes.append(change)
        prev = change.hash
    assert_same(wire_roundtrip(changes), changes)
    for change in changes:
        assert decode_body(change.body, change.sig).body == change.body


# -- canonical form ------------------------------------------------------------------------


def _raw_parts(change: Change) -> list[bytes]:
    """The body as the packed bytes of its 7 elements."""
    raw = msgpack.unpackb(change.body, raw=False)
    return [codec.pack(x) for x in raw]


@pytest.fixture
def sample() -> Change:
    key = device_key("phone-A")
    pred = ((5, device_key("phone-B").public_key), (7, key.public_key))
    op = canonical_put("voters", "v-1", {"a": 1.5, "b": "x"}, pred)
    return sign_change(key, PART, 1, b"", 1000, (op,))


def _op_bytes(fields: bytes, pred: bytes) -> bytes:
    return (b"\x91\x95" + codec.pack(0) + codec.pack("voters") + codec.pack("v-1")
            + fields + pred)


CANONICAL_FIELDS = b"\x82" + codec.pack("a") + codec.pack(1.5) + codec.pack("b") + codec.pack("x")


def non_canonical_variants(change: Change) -> dict[str, bytes]:
    """Bodies meaning the same change, encoded other than canonically."""
    p = _raw_parts(change)
    header, ops = b"".join(p[:6]), p[6]
    pred_sorted = codec.pack([[5, change.ops[0].pred[0][1]], [7, change.author]])
    pred_reversed = codec.pack([[7, change.author], [5, change.ops[0].pred[0][1]]])
    pred_dup = codec.pack([[5, change.ops[0].pred[0][1]], [5, change.ops[0].pred[0][1]],
                           [7, change.author]])
    fields_unsorted = b"\x82" + codec.pack("b") + codec.pack("x") + codec.pack("a") + codec.pack(
        1.5)
    fields_dup_key = (b"\x83" + codec.pack("a") + codec.pack(0) + codec.pack("a")
                      + codec.pack(1.5) + codec.pack("b") + codec.pack("x"))
    fields_float32 = (b"\x82" + codec.pack("a") + b"\xca" + struct.pack(">f", 1.5)
                      + codec.pack("b") + codec.pack("x"))
    fields_str8 = (b"\x82" + codec.pack("a") + codec.pack(1.5) + codec.pack("b")
                   + b"\xd9\x01x")
    assert _op_bytes(CANONICAL_FIELDS, pred_sorted) == ops  # the builders are right
    return {
        "array16 header": b"\xdc\x00\x07" + header + ops,
        "seq as uint8": b"\x97" + b"".join(p[:3]) + b"\xcc\x01" + b"".join(p[4:]),
        "seq as uint32": b"\x97" + b"".join(p[:3]) + b"\xce\x00\x00\x00\x01" + b"".join(p[4:]),
        "hlc as uint64": b"\x97" + b"".join(p[:5]) + b"\xcf" + (1000).to_bytes(8, "big") + ops,
        "partition as str8": b"\x97" + b"".join(p[:2]) + b"\xd9" + bytes([len(PART)])
        + PART.encode() + b"".join(p[3:]),
        "trailing byte": change.body + b"\xc0",
        "pred unsorted": b"\x97" + header + _op_bytes(CANONICAL_FIELDS, pred_reversed),
        "pred duplicate": b"\x97" + header + _op_bytes(CANONICAL_FIELDS, pred_dup),
        "map keys unsorted": b"\x97" + header + _op_bytes(fields_unsorted, pred_sorted),
        "map key repeated": b"\x97" + header + _op_bytes(fields_dup_key, pred_sorted),
        "float32": b"\x97" + header + _op_bytes(fields_float32, pred_sorted),
        "str8 for a short string": b"\x97" + header + _op_bytes(fields_str8, pred_sorted),
    }


VARIANTS = ["array16 header", "seq as uint8", "seq as uint32", "hlc as uint64",
            "partition as str8", "trailing byte", "pred unsorted", "pred duplicate",
            "map keys unsorted", "map key repeated", "float32", "str8 for a short string"]


def test_canonical_sample_decodes(sample: Change) -> None:
    assert b"\x97" + b"".join(_raw_parts(sample)) == sample.body
    assert decode_body(sample.body, sample.sig) == sample
    assert sorted(non_canonical_variants(sample)) == sorted(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_body_rejects_non_canonical_bodies(sample: Change, variant: str) -> None:
    body = non_canonical_variants(sample)[variant]
    assert body != sample.body
    if variant != "trailing byte":  # well-formed msgpack, just not the canonical form
        assert msgpack.unpackb(body, raw=False) is not None
    with pytest.raises(DecodeError):
        decode_body(body, sample.sig)


def test_non_canonical_wire_item_never_verifies(sample: Change) -> None:
    """A sender that reorders a map gets a refusal, never a different signed body."""
    items = WireEncoder().encode(sample)
    put = items[-1][2][0]
    put[3] = dict(reversed(list(put[3].items())))
    decoder = WireDecoder()
    try:
        changes = [c for c in map(decoder.decode, items) if c is not None]
        changes[0].verify()
    except (DecodeError, SignatureError):
        return
    raise AssertionError("a reordered map was accepted")


def test_encode_body_matches_sign_change(sample: Change) -> None:
    body = encode_body(sample.author, sample.partition, sample.seq, sample.prev, sample.hlc,
                       sample.ops)
    assert body == sample.body


def test_local_values_are_canonicalised_or_refused() -> None:
    put = canonical_put("c", "k", {"b": (1, 2), "a": {"y": 1, "x": 2}})
    assert list(put.fields) == ["a", "b"]
    assert put.fields == {"a": {"x": 2, "y": 1}, "b": [1, 2]}
    assert list(put.fields["a"]) == ["x", "y"]
    for bad in ({"f": object()}, {"f": 2**64}, {"f": {1: "x"}}, {"": 1}, {"f": "\ud800"}):
        with pytest.raises(UsageError):
            canonical_put("c", "k", bad)
    with pytest.raises(UsageError):
        canonical_put("c", "k\udcff", {"f": 1})  # a byte the terminal could not decode


# -- hostile input ----------------------------------------------------------------------------

LEAF = (st.none() | st.booleans() | st.integers() | st.integers(-3, 3)
        | st.floats(allow_nan=True) | st.text(max_size=6) | st.binary(max_size=70)
        | st.sampled_from([b"\x01" * 32, b"\x02" * 64, b"", "mimika/jila", "voters"]))
ANY = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=5)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=20)
SMALL_INT = st.integers(-2, 3) | st.integers(-(2**64), 2**65)
PRED = st.lists(st.lists(SMALL_INT, min_size=2, max_size=2) | ANY, max_size=3)
OP = st.one_of(
    st.tuples(st.sampled_from([0, 1, 2, False, True, 0.0]), LEAF | st.just("voters"),
              LEAF | st.just("v-1"), ANY, PRED).map(list),
    st.tuples(st.sampled_from([0, 1]), st.just("voters"), st.just("v-1"), PRED).map(list),
    st.lists(ANY, max_size=6),
)
ITEM = st.one_of(
    st.tuples(st.just(0), st.sampled_from([b"\x01" * 32, b"\x02" * 32]) | LEAF).map(list),
    st.tuples(st.just(1), SMALL_INT, st.sampled_from(["mimika/jila", "", "A"]) | LEAF,
              SMALL_INT | st.just(2**64 - 1), st.sampled_from([b"", b"\x03" * 32]) | LEAF
              ).map(list),
    st.tuples(st.just(2), SMALL_INT, st.lists(OP, max_size=3) | ANY,
              st.just(b"\x04" * 64) | LEAF).map(list),
    st.lists(ANY, max_size=6),
    ANY,
)


def decode_stream(items: Iterable[Any]) -> None:
    decoder = WireDecoder()
    for item in items:
        # The only refusal allowed; the stream goes on, to probe more decoder states.
        with contextlib.suppress(DecodeError):
            decoder.decode(item)


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(ITEM, max_size=12))
def test_wire_decoder_raises_only_decode_error(items: list[Any]) -> None:
    decode_stream(items)


EDGE_INT = st.sampled_from([0, 1, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
                            2**64, -(2**63), -(2**63) - 1]) | st.integers(-(2**70), 2**70)
FIELDS_MAP = st.dictionaries(st.sampled_from(["nama", "n", ""]),
                             VALUE | EDGE_INT | ANY, max_size=3)


@st.composite
def plausible_streams(draw: st.DrawFn) -> list[Any]:
    """Streams that are valid but for a few edge values, to reach the deep checks."""
    items: list[Any] = [[0, b"\x01" * 32], [0, b"\x02" * 32]]
    for _ in range(draw(st.integers(1, 2))):
        seq = draw(st.sampled_from([1, 2, 2**63 - 1, 2**64 - 1]) | EDGE_INT)
        prev = b"" if seq == 1 else b"\x03" * 32
        items.append([1, draw(st.sampled_from([0, 1])), "mimika/jila", seq, prev])
        for _ in range(draw(st.integers(1, 3))):
            pred = draw(st.lists(st.tuples(EDGE_INT, st.sampled_from([0, 1])).map(list),
                                 max_size=2))
            kind = draw(st.sampled_from([0, 1]))
            op = ([0, "voters", "v-1", draw(FIELDS_MAP), pred] if kind == 0
                  else [1, "voters", "v-1", pred])
            items.append([2, draw(EDGE_INT), [op], b"\x04" * 64])
    return items


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(plausible_streams())
def test_plausible_streams_raise_only_decode_error(items: list[Any]) -> None:
    decode_stream(items)


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_mutated_valid_streams_raise_only_decode_error(data: st.DataObject) -> None:
    key = device_key("phone-A")
    op = canonical_put("voters", "v-1", {"nama": "Ma'ruf", "n": [1, 2]},
                       ((5, device_key("phone-B").public_key),))
    first = sign_change(key, PART, 1, b"", 2**40, (op,))
    second = sign_change(key, PART, 2, first.hash, 2**40 + 9, (op,))
    encoder = WireEncoder()
    items = encoder.encode(first) + encoder.encode(second)
    for _ in range(data.draw(st.integers(1, 3))):
        target: Any = items
        path = []
        while isinstance(target, list) and target and data.draw(st.booleans()):
            index = data.draw(st.integers(0, len(target) - 1))
            path.append(index)
            target = target[index]
        if isinstance(target, list) and target:
            target[data.draw(st.integers(0, len(target) - 1))] = data.draw(ANY)
        elif path:
            parent: Any = items
            for index in path[:-1]:
                parent = parent[index]
            parent[path[-1]] = data.draw(ANY)
    decode_stream(items)


@settings(max_examples=500, deadline=None, suppress_health_check=SLOW_OK)
@given(st.binary(max_size=200))
def test_decode_body_raises_only_decode_error_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_body(data, b"\x00" * 64)


@settings(max_examples=500, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_decode_body_raises_only_decode_error_on_mutated_bodies(data: st.DataObject) -> None:
    key = device_key("phone-A")
    op = canonical_put("voters", "v-1", {"nama": "Ma\u2019ruf", "n": [1, 2.5, b"x"]},
                       ((5, device_key("phone-B").public_key),))
    body = bytearray(sign_change(key, PART, 3, b"\x07" * 32, 2**40, (op,)).body)
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if action == "set":
            body[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif action == "delete" and len(body) > 1:
            del body[at]
        else:
            del body[at:]
    try:
        change = decode_body(bytes(body), b"\x00" * 64)
    except DecodeError:
        return
    assert change.body == bytes(body)  # whatever decodes is exactly canonical


def _stream(seq: int = 1, dhlc: int = 1000, fields: Any = None, pred: Any = None,
            changes: int = 1) -> list[Any]:
    put = [0, "voters", "v-1", {"n": 1} if fields is None else fields, pred or []]
    prev = b"" if seq == 1 else b"\x03" * 32
    return ([[0, b"\x01" * 32], [1, 0, PART, seq, prev]]
            + [[2, dhlc, [put], b"\x04" * 64] for _ in range(changes)])


@pytest.mark.parametrize("items", [
    _stream(fields={"n": 2**64}),  # beyond msgpack's integers
    _stream(fields={"n": [-(2**63) - 1]}),
    _stream(fields={"b": 1, "a": 2}),  # map keys out of order
    _stream(fields={"n": {"y": 1, "x": 2}}),
    _stream(pred=[[-(2**63), 0]]),  # pred timestamp past the greatest HLC
    _stream(pred=[[2000, 0]]),  # pred timestamp before zero
    _stream(dhlc=2**63),  # HLC past what a store can hold (signed 64-bit)
    _stream(seq=2**63),
    _stream(seq=2**63 - 1, changes=2),  # the second change's seq would overflow
], ids=["int-too-big", "nested-int-too-small", "keys-unsorted", "nested-keys-unsorted",
        "pred-too-big", "pred-negative", "hlc-too-big", "seq-too-big", "seq-overflows"])
def test_out_of_range_or_unordered_stream_is_a_decode_error(items: list[Any]) -> None:
    decoder = WireDecoder()  # objects, not bytes: some of these msgpack could not even carry
    with pytest.raises(DecodeError):
        for item in items:
            decoder.decode(item)


def test_the_edges_themselves_decode() -> None:
    """Controls for the test above: the greatest legal values are accepted."""
    items = _stream(seq=2**63 - 1, dhlc=2**63 - 2,
                    fields={"a": -(2**63), "b": 2**64 - 1, "c": {"x": 1, "y": 2}},
                    pred=[[2**63 - 2, 0], [-1, 0]])  # deltas: pred hlcs 0 and 2**63 - 1
    decoder = WireDecoder()
    decoded = [c for c in map(decoder.decode, items) if c is not None]
    assert [(c.seq, c.hlc) for c in decoded] == [(2**63 - 1, 2**63 - 2)]
    assert decoded[0].ops[0].pred == ((0, b"\x01" * 32), (2**63 - 1, b"\x01" * 32))


@pytest.mark.parametrize("pred_hlc", [-1, 2**63, 2**64 - 1])
def test_decode_body_refuses_a_pred_out_of_range(pred_hlc: int) -> None:
    """Such a pred could never be re-sent: its wire delta would not fit msgpack."""
    author = device_key("phone-A").public_key
    op = Put("voters", "v-1", {"n": 1}, ((pred_hlc, author),))
    body = encode_body(author, PART, 1, b"", 2**40, (op,))
    with pytest.raises(DecodeError):
        decode_body(body, b"\x00" * 64)


def test_unpack_refuses_oversized_and_trailing_input() -> None:
    with pytest.raises(DecodeError):
        codec.unpack(b"\xc0" * 11, max_bytes=10)
    with pytest.raises(DecodeError):
        codec.unpack(codec.pack(1) + b"\x01", max_bytes=10)
    with pytest.raises(DecodeError):
        codec.unpack(b"\xdd\xff\xff\xff\xff", max_bytes=10)  # array32 header, no elements



def test_pack_matches_packb_in_every_thread_and_after_a_failed_pack() -> None:
    value = [b"\x01" * 32, 2**40, {"nama": "Contoh Uji", "rt": 3, "ktp_el": True}]
    with pytest.raises(TypeError):
        codec.pack([1, {"x": object()}])  # leaves nothing behind in the reused packer
    assert codec.pack(value) == msgpack.packb(value, use_bin_type=True)
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.extend(codec.pack(value) for _ in range(500)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(out) == {msgpack.packb(value, use_bin_type=True)} and len(out) == 2000


def test_pack_does_not_keep_a_large_buffer_per_thread() -> None:
    import gc
    import tracemalloc

    tracemalloc.start()
    try:
        out = codec.pack({"x": "a" * (8 << 20)})
        assert len(out) > 8 << 20
        del out
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1 << 20  # the 8 MiB value and its packed copy are gone, so is the buffer


@pytest.mark.parametrize(("data", "cause"), [
    (b"\x91" * 100_000 + b"\xc0", "nested more than 1024 levels deep"),
    (b"\xc1", "reserved or unknown msgpack type byte"),
    (b"\x01\x02", "trailing bytes after the item"),
    (b"\x92\x01", "incomplete input"),
], ids=["deep", "reserved-byte", "trailing", "truncated"])
def test_every_decode_error_names_its_cause(data: bytes, cause: str) -> None:
    """A malformed item is refused with its cause in words, never an empty reason."""
    with pytest.raises(DecodeError, match=cause):
        codec.unpack(data, max_bytes=1 << 20)


def test_a_frame_nested_100000_deep_names_the_nesting() -> None:
    """The session's frame decoder reports why a deeply nested frame is refused."""
    from meshsync.protocol import frames as fr

    reader = fr.FrameReader()
    payload = b"\x91" * 100_000 + b"\xc0"
    reader.feed(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(DecodeError, match="nested more than 1024 levels deep"):
        reader.next_message()
