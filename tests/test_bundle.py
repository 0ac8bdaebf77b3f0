"""Bundles (sneakernet files of signed changes): integrity, forks, replays, sizes, memory.

What a bundle import must guarantee (meshsync.protocol.bundle, docs/protocol.md):

* any changed, missing or extra byte is refused, with an error naming the stage that
  failed, and the store is exactly as before (state, version vector, refusal log);
* a bundle re-signed by nobody (checksum recomputed after tampering) fails at
  ``signature``; a lying end marker at ``decode``; an oversized item at ``size``;
* a second, different change at a held (author, partition, seq) is a fork: refused,
  evidence kept, the rest of the bundle applies;
* replaying a bundle changes nothing (docs/failure-cases.md B15);
* large records round-trip, too-large ones are refused clearly (B12);
* a 100,000-change bundle imports in bounded memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import START_MS, FakeClock, device_key

from meshsync.host.home import Home
from meshsync.model import change as change_module
from meshsync.model.change import Put, sign_change
from meshsync.model.errors import RemoteError, TooLargeError
from meshsync.model.hlc import make as make_hlc
from meshsync.model.identity import DeviceKey, device_id
from meshsync.model.limits import MAX_ITEM_BYTES, MAX_RECORD_BYTES
from meshsync.protocol.bundle import (
    END,
    FOOTER,
    FOOTER_BYTES,
    HEADER,
    MAGIC,
    export_bundle,
    import_bundle,
)
from meshsync.protocol.wire import WireEncoder
from meshsync.replica.node import Node
from meshsync.store import SQLiteStore

P = "mimika/jila/diloa/tps-003"
Q = "mimika/jila/jila/tps-001"


# -- helpers -------------------------------------------------------------------------


def new_home(path: Path, key: DeviceKey | None = None, partition: str = P) -> Path:
    """A node home; with ``key``, the home's device key is replaced by it."""
    home = Home.create(path, partition=partition)
    if key is not None:
        home.key_path.write_bytes(key.to_pem())
    return path


def open_home(path: Path, clock: FakeClock | None = None) -> Node:
    """A node on a home's SQLite store with a fake clock (close with ``node.store.close()``)."""
    home = Home.open(path)
    return Node(SQLiteStore(home.store_path), home.load_key(), clock or FakeClock(),
                default_partition=home.default_partition())


def bundle_bytes(node: Node) -> bytes:
    out = io.BytesIO()
    export_bundle(node, out)
    return out.getvalue()


def snapshot(node: Node) -> tuple[Any, ...]:
    """Everything an import may change: records, feeds, change count, logs, clock."""
    store = node.store
    return (node.canonical_state(), node.version_vector(), store.count_changes(),
            store.refusals(), store.forks(), store.credentials(), store.get_meta("hlc"))


def items_of(data: bytes) -> list[Any]:
    """The msgpack items of a bundle (between magic and footer)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(data[len(MAGIC):-FOOTER_BYTES])
    return list(unpacker)


def build(items: list[Any]) -> bytes:
    """A bundle file of ``items`` with a correct footer checksum (as a forger would)."""
    packer = msgpack.Packer(use_bin_type=True)
    body = MAGIC + b"".join(packer.pack(item) for item in items)
    return body + FOOTER + hashlib.sha256(body).digest()


def meshsync_cmd() -> list[str]:
    """The installed ``meshsync`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    assert found, "the meshsync console script is not installed (pip install -e .)"
    return [found]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    return subprocess.run([*meshsync_cmd(), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("meshsync: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def source() -> Iterator[Node]:
    """Device A (a phone) with one change; ``target_home`` makes it write two more."""
    node = Node(SQLiteStore(":memory:"), device_key("phone-A"), FakeClock(), default_partition=P)
    node.put("voters", "v-0001", {"nama": "Yosina", "lahir": 1980})
    yield node
    node.store.close()


@pytest.fixture
def target_home(tmp_path: Path, source: Node) -> Iterator[Path]:
    """Device B's home: its own record plus A's first change (so a bundle mixes
    duplicates and new changes). A then writes two more changes."""
    path = new_home(tmp_path / "b", device_key("phone-B"))
    b = open_home(path)
    b.put("voters", "v-0100", {"nama": "Ma'ruf Contoh", "status": "ms"})
    import_bundle(b, io.BytesIO(bundle_bytes(source)))
    b.store.close()
    source.put("voters", "v-0002", {"nama": "Debora Contoh", "lahir": 1991})
    source.put("voters", "v-0001", {"status": "pindah"})
    yield path


@pytest.fixture
def target(target_home: Path) -> Iterator[Node]:
    node = open_home(target_home)
    yield node
    node.store.close()


# -- integrity: any byte changed ----------------------------------------------------------


def expected_message(offset: int, size: int) -> str:
    """What a flipped byte at ``offset`` must be reported as."""
    if offset < len(MAGIC):
        return "not a meshsync bundle"
    if size - FOOTER_BYTES <= offset < size - FOOTER_BYTES + len(FOOTER):
        return "footer missing"
    return "checksum mismatch"


def test_every_flipped_byte_is_refused_and_changes_nothing(source: Node, target: Node) -> None:
    data = bundle_bytes(source)
    before = snapshot(target)
    assert 300 < len(data) < 2000  # small enough to try every offset
    for offset in range(len(data)):
        bad = bytearray(data)
        bad[offset] ^= 0xFF
        with pytest.raises(RemoteError) as info:
            import_bundle(target, io.BytesIO(bytes(bad)))
        assert info.value.stage == "decode", offset
        assert expected_message(offset, len(data)) in str(info.value), (offset, info.value)
        assert snapshot(target) == before, offset
    # The untouched bundle still imports: the refusals above were about the bytes.
    report = import_bundle(target, io.BytesIO(data))
    assert (report.apply.applied, report.apply.duplicates) == (2, 1)
    assert snapshot(target) != before


@pytest.mark.parametrize("cut", [0, 1, 8, 9, 30, 0.5, -FOOTER_BYTES - 1, -FOOTER_BYTES,
                                 -FOOTER_BYTES + len(FOOTER), -1, "extra"])
def test_truncated_or_extended_bundle_is_refused(source: Node, target: Node,
                                                  cut: float | str) -> None:
    data = bundle_bytes(source)
    if cut == "extra":
        bad = data + b"\x00"
    else:
        assert not isinstance(cut, str)
        length = int(len(data) * cut) if isinstance(cut, float) else int(cut)
        bad = data[:length]
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(bad))
    assert info.value.stage == "decode"
    assert any(word in str(info.value) for word in
               ("truncated", "footer missing", "checksum mismatch", "not a meshsync bundle"))
    assert snapshot(target) == before


def test_cli_refuses_corrupted_bundle_and_store_is_unchanged(
        source: Node, target_home: Path, tmp_path: Path) -> None:
    data = bundle_bytes(source)
    node = open_home(target_home)
    before = snapshot(node)
    node.store.close()
    size = len(data)
    for offset in (0, len(MAGIC), size // 2, size - FOOTER_BYTES, size - 1):
        bad = bytearray(data)
        bad[offset] ^= 0xFF
        path = tmp_path / f"bad-{offset}.msb"
        path.write_bytes(bytes(bad))
        proc = cli("bundle", "import", "--home", str(target_home), str(path))
        assert_one_error_line(proc, "decode: ", expected_message(offset, size))
        node = open_home(target_home)
        assert snapshot(node) == before, offset
        node.store.close()


# -- integrity: forged content with a valid checksum --------------------------------------


def tamper_last_value(data: bytes) -> bytes:
    """Change a value inside the bundle's last change, recompute the footer checksum."""
    items = items_of(data)
    last = max(i for i, item in enumerate(items) if item[0] == 2)
    fields = items[last][2][0][3]
    assert fields == {"status": "pindah"}
    fields["status"] = "meninggal"
    return build(items)


def test_forged_value_with_recomputed_checksum_fails_at_signature(
        source: Node, target: Node) -> None:
    forged = tamper_last_value(bundle_bytes(source))
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(forged))
    assert info.value.stage == "signature"
    assert f"signature by {device_id(source.key.public_key)[:8]} does not verify" in str(
        info.value)
    # The valid change before the forged one (v-0002) was rolled back with it.
    assert snapshot(target) == before
    assert target.get("voters", "v-0002") is None


def test_cli_forged_bundle_exits_nonzero_naming_signature(
        source: Node, target_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "forged.msb"
    path.write_bytes(tamper_last_value(bundle_bytes(source)))
    node = open_home(target_home)
    before = snapshot(node)
    node.store.close()
    proc = cli("bundle", "import", "--home", str(target_home), str(path))
    assert_one_error_line(proc, "signature: ", "does not verify")
    node = open_home(target_home)
    assert snapshot(node) == before
    node.store.close()


@pytest.mark.parametrize("counts", [[4, 0], [2, 0], [3, 1], [3]])
def test_end_marker_with_wrong_counts_fails_at_decode(
        source: Node, target: Node, counts: list[int]) -> None:
    items = items_of(bundle_bytes(source))
    assert items[-1] == [END, 3, 0]
    items[-1] = [END, *counts]
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(build(items)))
    assert info.value.stage == "decode"
    assert "end marker" in str(info.value)
    assert snapshot(target) == before


def test_missing_header_or_end_marker_fails_at_decode(source: Node, target: Node) -> None:
    items = items_of(bundle_bytes(source))
    assert items[0][0] == HEADER
    before = snapshot(target)
    for bad, words in ((items[1:], "header missing"), (items[:-1], "no end marker"),
                       ([*items, [END, 3, 0]], "after the bundle's end marker")):
        with pytest.raises(RemoteError) as info:
            import_bundle(target, io.BytesIO(build(bad)))
        assert info.value.stage == "decode"
        assert words in str(info.value)
        assert snapshot(target) == before


# -- forks ---------------------------------------------------------------------------


def test_fork_is_refused_with_evidence_and_rest_of_bundle_applies(tmp_path: Path) -> None:
    """Phone A's home is copied (same key) and both copies write seq 3 differently.
    Importing the copy's bundle into A refuses the fork (and what chains on it), keeps
    the evidence for ``meshsync log``, and applies everything else in the bundle."""
    a_path = new_home(tmp_path / "a", device_key("phone-A"))
    a = open_home(a_path, FakeClock())
    a.put("voters", "v-0001", {"nama": "Yosina"})
    a.put("voters", "v-0002", {"nama": "Ma'ruf Contoh"})
    a.store.close()
    copy_path = tmp_path / "a-copy"
    shutil.copytree(a_path, copy_path)

    a = open_home(a_path, FakeClock(START_MS + 1000))
    held = a.put("voters", "v-0003", {"nama": "Asli Contoh"})  # seq 3 on A
    a.store.close()

    c = Node(SQLiteStore(":memory:"), device_key("phone-C"), FakeClock(), default_partition=P)
    c.put("voters", "v-0200", {"nama": "Yosina Contoh"})
    forger = open_home(copy_path, FakeClock(START_MS + 2000))
    import_bundle(forger, io.BytesIO(bundle_bytes(c)))
    other = forger.put("voters", "v-0003", {"nama": "Palsu Contoh"})  # seq 3 again
    forger.put("voters", "v-0004", {"nama": "Ikut Contoh"})  # seq 4, chains on the fork
    forger.put("voters", "v-0100", {"nama": "Lain Contoh"}, partition=Q)
    assert (held.seq, other.seq) == (3, 3) and held.hash != other.hash
    bundle = tmp_path / "copy.msb"
    bundle.write_bytes(bundle_bytes(forger))
    forger.store.close()

    proc = cli("bundle", "import", "--home", str(a_path), "--json", str(bundle))
    assert proc.returncode == 3, proc.stderr  # some changes refused
    report = json.loads(proc.stdout)
    assert (report["applied"], report["duplicates"]) == (2, 2)  # C's change, Q's change
    refused = [(r["partition"], r["seq"], r["stage"]) for r in report["refused"]]
    assert refused == [(P, 3, "fork"), (P, 4, "hash chain")]

    proc = cli("log", "--home", str(a_path), "--json")
    assert proc.returncode == 0, proc.stderr
    log = json.loads(proc.stdout)
    a_id = device_id(device_key("phone-A").public_key)
    assert log["forks"] == [{
        "author": a_id, "partition": P, "seq": 3, "held_hash": held.hash.hex(),
        "other_body": other.body.hex(), "other_sig": other.sig.hex(),
        "note": "second change at a seq already held"}]
    assert [(r["seq"], r["stage"]) for r in log["refusals"]] == [(3, "fork"), (4, "hash chain")]
    assert all(r["source"] == "bundle:copy.msb" for r in log["refusals"])

    a = open_home(a_path)
    try:
        assert a.get("voters", "v-0003").fields == {"nama": "Asli Contoh"}  # type: ignore[union-attr]
        assert a.get("voters", "v-0004") is None
        assert a.get("voters", "v-0100").fields == {"nama": "Lain Contoh"}  # type: ignore[union-attr]
        assert a.get("voters", "v-0200").fields == {"nama": "Yosina Contoh"}  # type: ignore[union-attr]
        assert a.version_vector()[(device_key("phone-A").public_key, P)] == 3
    finally:
        a.store.close()


# -- replays -------------------------------------------------------------------------


def test_importing_the_same_bundle_twice_changes_nothing(
        source: Node, target: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bundle_bytes(source)
    first = import_bundle(target, io.BytesIO(data))
    assert (first.apply.applied, first.apply.duplicates) == (2, 1)
    after_first = snapshot(target)

    def no_verify(*args: Any) -> None:
        raise AssertionError("a duplicate must be recognised before verifying signatures")

    monkeypatch.setattr(change_module, "verify", no_verify)  # B15: replays are cheap
    second = import_bundle(target, io.BytesIO(data))
    assert second.apply.received == 3
    assert (second.apply.applied, second.apply.duplicates) == (0, 3)
    assert second.apply.refused == second.apply.invalid == []
    assert snapshot(target) == after_first


# -- sizes (B12) ---------------------------------------------------------------------------


def test_five_megabyte_record_round_trips(tmp_path: Path) -> None:
    photo = random.Random(12).randbytes(5 * 1024 * 1024)
    note = "".join(random.Random(13).choices("abcdefghij ", k=1000))
    a = Node(SQLiteStore(tmp_path / "a.sqlite"), device_key("phone-A"), FakeClock(),
             default_partition=P)
    a.put("voters", "v-0001", {"nama": "Yosina", "foto": photo, "catatan": note})
    path = tmp_path / "big.msb"
    with path.open("wb") as f:
        export_bundle(a, f)
    assert path.stat().st_size > len(photo)
    b = Node(SQLiteStore(tmp_path / "b.sqlite"), device_key("phone-B"), FakeClock(),
             default_partition=P)
    with path.open("rb") as f:
        report = import_bundle(b, f)
    assert report.apply.applied == 1
    got = b.get("voters", "v-0001")
    assert got is not None and got.fields == {"nama": "Yosina", "foto": photo, "catatan": note}
    assert b.canonical_state() == a.canonical_state()


def test_record_over_limit_is_refused_locally(source: Node) -> None:
    before = snapshot(source)
    with pytest.raises(TooLargeError) as info:
        source.put("voters", "v-0009", {"foto": b"\x00" * MAX_RECORD_BYTES})
    assert f"the limit is {MAX_RECORD_BYTES} bytes" in str(info.value)
    assert "voters/v-0009" in str(info.value)
    assert snapshot(source) == before


def oversized_bundle(item_bytes: int) -> bytes:
    """A bundle whose second change item is ``item_bytes`` long (msgpack-encoded)."""
    key = device_key("phone-F")
    ok = sign_change(key, P, 1, b"", make_hlc(START_MS), (Put("voters", "v-0500",
                                                               {"nama": "Yosina"}),))
    items: list[Any] = [[HEADER, {"created_ms": START_MS, "creator": key.public_key,
                                  "version": 1}]]
    items += WireEncoder().encode(ok)
    big = [2, 1, [[0, "voters", "v-0002", {"foto": b""}, []]], b"s" * 64]
    pad = item_bytes - len(msgpack.packb(big, use_bin_type=True))
    big[2][0][3]["foto"] = b"\x00" * (pad - 3)  # the empty bin's 2-byte header becomes 5
    assert len(msgpack.packb(big, use_bin_type=True)) == item_bytes
    return build([*items, big, [END, 2, 0]])


@pytest.mark.parametrize("item_bytes", [MAX_ITEM_BYTES + 1, MAX_ITEM_BYTES + 100_000,
                                        2 * MAX_ITEM_BYTES + 1])
def test_bundle_item_over_limit_is_refused_at_size(target: Node, item_bytes: int) -> None:
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(oversized_bundle(item_bytes)))
    assert info.value.stage == "size"
    assert str(MAX_ITEM_BYTES) in str(info.value)
    assert snapshot(target) == before
    assert target.get("voters", "v-0500") is None  # the valid change before it too


def test_received_record_over_limit_is_refused_at_size(target: Node) -> None:
    """A signed change (by a modified client) whose record exceeds MAX_RECORD_BYTES but
    fits in MAX_CHANGE_BYTES is refused on receipt too (meshsync.model.limits)."""
    key = device_key("phone-F")
    ok = sign_change(key, P, 1, b"", make_hlc(START_MS),
                     (Put("voters", "v-0500", {"nama": "Yosina"}),))
    fields = {"foto": b"\x00" * (MAX_RECORD_BYTES - 10)}  # encoded: limit + 1 byte
    assert len(msgpack.packb(fields, use_bin_type=True)) == MAX_RECORD_BYTES + 1
    big = sign_change(key, P, 2, ok.hash, make_hlc(START_MS + 1),
                      (Put("voters", "v-0501", fields),))
    items: list[Any] = [[HEADER, {"created_ms": START_MS, "creator": key.public_key,
                                  "version": 1}]]
    encoder = WireEncoder()
    items += encoder.encode(ok) + encoder.encode(big) + [[END, 2, 0]]
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(build(items)))
    assert info.value.stage == "size"
    assert f"record voters/v-0501 is {MAX_RECORD_BYTES + 1} bytes" in str(info.value)
    assert f"the limit is {MAX_RECORD_BYTES} bytes" in str(info.value)
    assert snapshot(target) == before
    assert target.get("voters", "v-0500") is None


# -- 100,000 changes in bounded memory ---------------------------------------------------------

#: Bounds for importing 100,000 voter-like single-op changes (a ~27 MB bundle).
#: Measured here: a process with meshsync's CLI imported peaks at ~41 MB before the
#: import and grows ~11 MB during it (SQLite's 2 MB page cache, one 64 KiB read chunk,
#: at most FLUSH_EVERY = 2,000 record states between flushes). Holding the bundle file
#: would add 27 MB, every decoded change ~100 MB, every record state ~350 MB (measured
#: with FLUSH_EVERY raised past 100,000: peak 396 MB), so a 24 MB growth bound fails any
#: import that is not streaming; 150 MB is an absolute ceiling with room for a heavier
#: interpreter build.
MAX_PEAK_RSS_MB = 150
MAX_GROWTH_MB = 24

#: Runs the real CLI and reports the process's peak RSS. VmHWM (Linux) is the peak of
#: this process image only; ru_maxrss is the fallback elsewhere. ru_maxrss is not used
#: on Linux because it is carried across fork and execve: a child of a pytest process
#: that once held 200 MB (the 8 MiB record tests) reports 200 MB before doing anything.
_MEASURE = textwrap.dedent("""
    import json, resource, sys
    from meshsync.cli.main import main
    main.load_all()  # commands load lazily: count their imports in the base, not the growth

    def peak_kb():
        try:
            with open("/proc/self/status") as f:
                return int(next(l for l in f if l.startswith("VmHWM:")).split()[1])
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    base = peak_kb()
    try:
        main(sys.argv[1:], prog_name="meshsync")
    finally:
        print(json.dumps({"base_kb": base, "peak_kb": peak_kb()}), file=sys.stderr)
""")



def voter(n: int) -> dict[str, Any]:
    """A fictitious voter's fields (canonical: keys sorted), ~190 bytes encoded."""
    born = f"{1 + n % 28:02d}{1 + n % 12:02d}{50 + n % 50:02d}"
    return {"alamat": f"Jalan Contoh No. {n % 97}, RT {n % 9:03d}/RW {n % 7:03d}",
            "jenis_kelamin": "LP"[n % 2], "kk": f"910901{n % 10**10:010d}",
            "nama": f"Contoh {n}", "nik": f"910901{born}{n % 10**4:04d}",
            "status_kawin": "BK", "tanggal_lahir": f"19{born[4:]}-{born[2:4]}-{born[:2]}",
            "tempat_lahir": "Timika", "tps": n % 600}


def write_bundle(path: Path, count: int, per_change: int = 1) -> None:
    """``count`` voters written by one device in one feed as changes of ``per_change``
    puts each, in bundle format (faster than a Node: no store, no fsync per change)."""
    key = device_key("phone-G")
    packer, encoder = msgpack.Packer(use_bin_type=True), WireEncoder()
    digest = hashlib.sha256()
    with path.open("wb") as f:
        def write(data: bytes) -> None:
            f.write(data)
            digest.update(data)

        write(MAGIC)
        write(packer.pack([HEADER, {"created_ms": START_MS, "creator": key.public_key,
                                    "version": 1}]))
        prev, hlc, seq = b"", make_hlc(START_MS), 0
        for first in range(1, count + 1, per_change):
            ops = tuple(Put("voters", f"v-{n:06d}", voter(n))
                        for n in range(first, min(first + per_change, count + 1)))
            seq += 1
            change = sign_change(key, P, seq, prev, hlc, ops)
            write(b"".join(packer.pack(item) for item in encoder.encode(change)))
            prev, hlc = change.hash, hlc + len(ops)
        write(packer.pack([END, seq, 0]))
        f.write(FOOTER + digest.digest())


def import_measured(bundle: Path, home: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Import with the real CLI in a fresh process; its JSON report and RSS in kB."""
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, "bundle", "import", "--home", str(home), "--json",
         str(bundle)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), json.loads(proc.stderr.splitlines()[-1])


def check_bounded(rss: dict[str, int]) -> None:
    peak_mb, growth_mb = rss["peak_kb"] / 1024, (rss["peak_kb"] - rss["base_kb"]) / 1024
    assert peak_mb < MAX_PEAK_RSS_MB, rss
    assert growth_mb < MAX_GROWTH_MB, rss


def check_imported(home: Path, count: int, changes: int) -> None:
    node = open_home(home)
    try:
        assert node.store.count_changes() == changes
        assert node.version_vector() == {(device_key("phone-G").public_key, P): changes}
        last = node.get("voters", f"v-{count:06d}")
        assert last is not None and last.fields == voter(count)
        assert sum(1 for _ in node.store.iter_records("voters")) == count
    finally:
        node.store.close()


@pytest.mark.slow
def test_100k_change_bundle_imports_in_bounded_memory(tmp_path: Path) -> None:
    count = 100_000
    bundle = tmp_path / "big.msb"
    write_bundle(bundle, count)
    assert bundle.stat().st_size > MAX_GROWTH_MB * 2**20  # holding it would fail the bound
    home = new_home(tmp_path / "home", device_key("laptop-GW"))
    report, rss = import_measured(bundle, home)
    assert (report["received"], report["applied"], report["refused"]) == (count, count, [])
    check_bounded(rss)
    check_imported(home, count, count)


@pytest.mark.slow
def test_batched_changes_import_in_bounded_memory(tmp_path: Path) -> None:
    """Changes of 100 records each (how devices write a baseline): memory is bounded by
    records touched, not changes read; 20,000 record states held at once take ~100 MB."""
    count, per_change = 20_000, 100
    bundle = tmp_path / "batched.msb"
    write_bundle(bundle, count, per_change)
    home = new_home(tmp_path / "home", device_key("laptop-GW"))
    report, rss = import_measured(bundle, home)
    assert (report["applied"], report["refused"]) == (count // per_change, [])
    check_bounded(rss)
    check_imported(home, count, count // per_change)


@pytest.mark.parametrize("header", [
    {"created_ms": 1, "creator": b"\x01" * 32, "version": 99},
    {"created_ms": 1, "creator": b"\x01" * 32, "version": True},
    {"created_ms": "x", "creator": 5, "version": 1},
], ids=["future version", "bool version", "bad fields"])
def test_a_bundle_header_of_another_version_or_shape_is_refused(
        source: Node, target: Node, header: dict[str, Any]) -> None:
    items = items_of(bundle_bytes(source))
    items[0] = [HEADER, header]
    before = snapshot(target)
    with pytest.raises(RemoteError) as info:
        import_bundle(target, io.BytesIO(build(items)))
    assert info.value.stage == "decode"
    assert "header" in str(info.value) or "version" in str(info.value)
    assert snapshot(target) == before
