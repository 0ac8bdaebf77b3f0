"""Real processes, real mutual TLS 1.3 on 127.0.0.1 (docs/architecture.md §10, level 4).

Every home is made and enrolled with the real CLI; ``meshsync serve`` runs as a
subprocess and ``meshsync sync`` is run as one. Bad and hostile peers are built with
``ssl`` + trio only where the CLI cannot be that peer (no certificate, garbage frames).

The district (authority and enrolled homes) is enrolled once per module and copied
for each test: copies share keys and certificates, but no test sees another's store.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from netfixtures import (
    DISTRICT,
    MESHSYNC,
    VILLAGE,
    ByteCountingRelay,
    District,
    ServerProcess,
    Servers,
    client_context,
    count_changes,
    device_id,
    frame,
    raw_tls_exchange,
    run,
    run_json,
    self_signed_home,
    stored_changes,
    sync,
    wait_until,
    wire_items,
    write_many_changes,
)

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.change import decode_body
from meshsync.protocol import frames as fr
from meshsync.protocol.session import SessionConfig
from meshsync.protocol.stream import SessionEncoder

PHONES = {"phone-a": "tps-001", "phone-b": "tps-002", "phone-c": "tps-003",
          "phone-h": "tps-004"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrol once: our district (laptop, four phones, a self-signed impostor) and a
    second authority with one phone of its own."""
    root = tmp_path_factory.mktemp("template")
    ours = District(root / "ours")
    ours.enrol("laptop", "gateway", DISTRICT)
    for name, tps in PHONES.items():
        ours.enrol(name, scope=VILLAGE, partition=f"{VILLAGE}/{tps}")
    self_signed_home(ours, "phone-s")
    theirs = District(root / "theirs")
    theirs.enrol("phone-x", scope=VILLAGE, partition=f"{VILLAGE}/tps-001")
    return root


@dataclass
class Net:
    """This test's copy of the district, and its servers."""

    ours: District
    theirs: District
    servers: Servers

    def home(self, name: str) -> Path:
        """One of our homes by name."""
        return self.ours.home(name)


@pytest.fixture
def net(template: Path, tmp_path: Path) -> Iterator[Net]:
    shutil.copytree(template, tmp_path / "net")
    servers = Servers(tmp_path)
    yield Net(District(tmp_path / "net" / "ours"), District(tmp_path / "net" / "theirs"),
              servers)
    servers.stop_all()


def put(home: Path, key: str, *assignments: str) -> None:
    run("put", "--home", home, "voters", key, *assignments)


def view(home: Path) -> dict[str, Any]:
    """What a user sees on ``home``: its records and its feeds."""
    feeds = run_json("log", "--home", home)["feeds"]
    return {"records": run_json("ls", "--home", home, "voters"),
            "feeds": sorted((f["author"], f["partition"], f["seq"], f["head"]) for f in feeds)}


def short(home: Path) -> str:
    return device_id(home)[:8]


def author_key(home: Path) -> bytes:
    with open_node(home) as node:
        return node.key.public_key


def wipe_notice(line: str) -> bool:
    """A line a revoked device prints as it wipes itself (cli/wipe.py)."""
    return line.startswith(("meshsync: this device has been revoked", "  its own "))


def assert_one_line_error(stderr: str, *needles: str) -> None:
    """One error line (besides the notice of a revoked device wiping itself)."""
    lines = [line for line in stderr.strip().splitlines() if not wipe_notice(line)]
    assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def assert_still_serving(net: Net, server: ServerProcess, client: str = "phone-b") -> None:
    """The server is alive and a good client still completes a sync with it."""
    server.assert_alive()
    summary = sync(net.home(client), server)
    assert summary["rc"] == 0 and summary["error"] is None and summary["converged"]
    server.wait_for_log(rf"synced with {short(net.home(client))} ")


# -- good peers ------------------------------------------------------------------------


def test_two_homes_are_identical_after_one_sync(net: Net) -> None:
    phone, laptop = net.home("phone-a"), net.home("laptop")
    put(phone, "a-0001", "nama=Yosina Contoh", "nik=9909014107800001", "status=MS")
    put(phone, "a-0002", "nama=Ma'ruf Contoh", "umur:=44")
    put(phone, "a-0001", "status=TMS", "alasan=pindah domisili")
    put(laptop, "l-0001", "nama=Natalis Uji", "tps=tps-003")
    assert view(phone) != view(laptop)
    server = net.servers.start(laptop)

    summary = sync(phone, server)

    assert summary["rc"] == 0 and summary["error"] is None and summary["converged"] is True
    assert (summary["changes_sent"], summary["changes_received"]) == (3, 1)
    assert summary["bytes_sent"] > 0 and summary["bytes_received"] > 0
    assert 0 < summary["seconds"] < 30
    assert server.stop() == 0
    assert view(phone) == view(laptop)
    assert len(view(phone)["records"]) == 3
    got = [run_json("get", "--home", h, "voters", "a-0001") for h in (phone, laptop)]
    assert got[0] == got[1] and got[0]["fields"]["status"] == "TMS"
    assert f"synced with {short(phone)} (127.0.0.1): sent 1, received 3 changes" in server.log()


def test_third_home_gets_first_homes_changes_with_original_signatures(net: Net) -> None:
    first, second, third = net.home("phone-a"), net.home("laptop"), net.home("phone-c")
    for i in range(3):
        put(first, f"a-{i:04d}", f"nama=Contoh {i}", "status=MS")
    server = net.servers.start(second)
    assert sync(first, server)["changes_sent"] == 3

    summary = sync(third, server)  # the third never meets the first

    assert summary["rc"] == 0 and summary["changes_received"] == 3
    assert server.stop() == 0
    author = author_key(first)
    held_by_first = {k: v for k, v in stored_changes(first).items() if k[0] == author}
    held_by_third = {k: v for k, v in stored_changes(third).items() if k[0] == author}
    assert len(held_by_first) == 3
    assert held_by_third == held_by_first  # byte for byte: body and signature
    for body, sig in held_by_third.values():
        decode_body(body, sig).verify()  # raises unless the author's own signature
    assert view(third) == view(second) == view(first)


def test_identical_peers_cost_two_round_trips_and_under_2_kb(net: Net) -> None:
    phone, laptop = net.home("phone-a"), net.home("laptop")
    put(phone, "a-0001", "nama=Yosina Contoh")
    put(laptop, "l-0001", "nama=Natalis Uji")
    server = net.servers.start(laptop)
    first = sync(phone, server)
    assert first["changes_sent"] == 1 and first["credentials_sent"] >= 1

    again = sync(phone, server)

    assert again["rc"] == 0 and again["converged"] is True
    assert (again["changes_sent"], again["changes_received"]) == (0, 0)
    # Each end sends HELLO at once and SUMMARY only after the peer's HELLO, so n frames
    # each way is at most n round trips after TLS (equal digests: nothing follows).
    assert again["frames_sent"] <= 2 and again["frames_received"] <= 2, again
    assert again["bytes_sent"] + again["bytes_received"] <= 2048, again
    assert server.stop() == 0
    print(f"\nidentical peers: {again['frames_sent']}+{again['frames_received']} frames, "
          f"{again['bytes_sent']}+{again['bytes_received']} bytes (first sync "
          f"{first['bytes_sent']}+{first['bytes_received']})")


# -- peers that must be refused -----------------------------------------------------------


def _refused_by_cli(home: Path, server: ServerProcess) -> str:
    """Run ``meshsync sync --json`` from a home that must be refused; its stderr.

    With ``--json`` too the reason goes to stderr as one line (stdout, if anything,
    is the JSON summary naming the same error)."""
    proc = run("sync", "--home", home, server.address, "--json", check=False)
    assert proc.returncode == 1, proc
    if proc.stdout.strip():
        assert json.loads(proc.stdout)["error"] in proc.stderr
    return proc.stderr


BAD_CLIENTS = {
    # name: (client error needles, server log pattern)
    "no certificate": (["CERTIFICATE_REQUIRED"],
                       r"refused 127\.0\.0\.1:\d+ at tls: the client presented no certificate"),
    "self-signed": (["does not trust our certificate", "UNKNOWN_CA"],
                    r"refused 127\.0\.0\.1:\d+ at tls: peer certificate not issued by our "
                    r"authority .*self-signed certificate"),
    "another authority": (["peer certificate not issued by our authority"],
                          r"refused 127\.0\.0\.1:\d+ at tls: the peer does not trust our "
                          r"certificate"),
    "another authority's certificate, our root": (
        ["does not trust our certificate"],
        r"refused 127\.0\.0\.1:\d+ at tls: peer certificate not issued by our authority "
        r".*certificate verify failed"),
    "revoked": (["identity: peer refused", "revoked"],
                r"refused 127\.0\.0\.1:\d+ at identity: device \w{8}: revoked"),
}


@pytest.mark.parametrize("case", list(BAD_CLIENTS))
def test_bad_client_is_refused_and_server_keeps_serving(net: Net, case: str) -> None:
    needles, server_says = BAD_CLIENTS[case]
    laptop = net.home("laptop")
    server = net.servers.start(laptop)
    if case == "no certificate":
        result = raw_tls_exchange(server.port, client_context(laptop / "root.crt", None), b"")
        assert result.frames == [] and result.error is not None
        assert all(n in result.error for n in needles), result.error
    else:
        if case == "self-signed":
            client = net.home("phone-s")
        elif case == "another authority":
            client = net.theirs.home("phone-x")
        elif case == "another authority's certificate, our root":
            client = net.theirs.home("phone-x")
            shutil.copy(laptop / "root.crt", client / "root.crt")
        else:
            client = net.home("phone-c")
            assert sync(client, server)["rc"] == 0  # accepted before the revocation
            net.ours.revoke(client)
            delivered = sync(net.ours.authority, server)  # the revocation travels by sync
            assert delivered["credentials_sent"] >= 1
            needles = [*needles, short(client)]
        assert_one_line_error(_refused_by_cli(client, server), *needles)
    server.wait_for_log(server_says)
    assert_still_serving(net, server)
    assert server.stop() == 0


def test_revocation_is_refused_while_serve_holds_the_authority_home(net: Net) -> None:
    """KPU's server runs on the authority home; `authority revoke` there is refused
    while `serve` holds it (one home, one writer: serve takes no writes; a daemon
    would take it through its API). Stopped, revoked and restarted, the server
    refuses the phone's next session."""
    kpu, phone = net.ours.authority, net.home("phone-c")
    server = net.servers.start(kpu)
    assert sync(phone, server)["rc"] == 0

    proc = run("authority", "revoke", "--home", kpu, device_id(phone), check=False)
    assert proc.returncode == 1, proc
    assert_one_line_error(proc.stderr, str(kpu), "serve")
    assert sync(phone, server)["rc"] == 0
    assert server.stop() == 0

    net.ours.revoke(phone)
    server = net.servers.start(kpu)
    assert_one_line_error(_refused_by_cli(phone, server), "revoked", short(phone))
    server.wait_for_log(rf"refused 127\.0\.0\.1:\d+ at identity: device {short(phone)}: revoked")
    assert_still_serving(net, server)
    assert server.stop() == 0


# -- hostile peers with a valid certificate -------------------------------------------------


def _hostile_batch(home: Path, corrupt: str | None) -> bytes:
    """A CHANGES frame of ``home``'s three changes, intact or with one item spoiled."""
    items = wire_items(home)
    assert sum(1 for i in items if i[0] == 2) == 3  # three change items
    last = max(i for i, item in enumerate(items) if item[0] == 2)
    if corrupt == "garbage item":
        items[last] = ["not", "a", "change"]
    elif corrupt == "bad signature":
        sig = bytearray(items[last][3])
        sig[0] ^= 0x01
        items[last] = [*items[last][:3], bytes(sig)]
    return frame([fr.CHANGES, 1, items])


HOSTILE = {
    # name: (what the raw client sends after TLS, ERROR stage or None if cut, log pattern)
    "http request instead of hello": ("http", "size", r"frame of \d+ bytes exceeds limit"),
    "garbage frame": ("garbage", "decode", r"decode: malformed msgpack"),
    "garbage item in a batch": ("garbage item", "decode", r"decode: unexpected stream item"),
    "bad signature in a batch": ("bad signature", "signature",
                                 r"signature: signature by \w{8} does not verify"),
    "oversized length prefix": ("oversized", "size",
                                r"size: compressed frame of 2147483647 bytes exceeds limit"),
    "stops mid-frame": ("cut", None, r"connection closed inside a frame"),
    # compressed frames (protocol version 4): the session agreed on dictionary 1
    "compressed frame expanding past the limit": (
        "bomb", "size", r"size: compressed frame expands beyond the frame limit of 8781824"),
    "corrupt zlib stream": ("corrupt zlib", "decode", r"decode: compressed frame"),
    "unknown dictionary id": ("dictionary 7", "decode",
                              r"decode: compressed frame names dictionary 7; this session "
                              r"agreed on dictionary 1"),
}


def _compressed(frame_bytes: bytes, *, extra: bytes = b"", dict_id: int = 1) -> bytes:
    """``frame_bytes`` (an uncompressed frame) compressed with dictionary 1 as a
    version-4 sender does, its payload followed by ``extra`` before deflating, and
    naming ``dict_id``."""
    deflate = zlib.compressobj(9, zdict=fr.Compression.of(1).zdict)
    body = bytes((dict_id,)) + deflate.compress(frame_bytes[4:] + extra) + deflate.flush()
    return (len(body) | fr.COMPRESSED).to_bytes(4, "big") + body


def _corrupt(frame_bytes: bytes) -> bytes:
    """A compressed frame with bytes in the middle of its zlib stream flipped."""
    spoiled = bytearray(_compressed(frame_bytes))
    for at in range(len(spoiled) // 2, len(spoiled) // 2 + 4):
        spoiled[at] ^= 0x5A
    return bytes(spoiled)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_peer_session_is_closed_and_nothing_partial_applied(net: Net,
                                                                    case: str) -> None:
    what, stage, logged = HOSTILE[case]
    laptop, hostile = net.home("laptop"), net.home("phone-h")
    with open_node(hostile) as node:
        for i in range(3):
            node.put("voters", f"h-{i:04d}", {"nama": f"Contoh {i}", "status": "MS"})
    server = net.servers.start(laptop)
    before = stored_changes(laptop)
    batch = _hostile_batch(hostile, what if what in ("garbage item", "bad signature") else None)
    if what == "bomb":
        assert len(_compressed(batch, extra=bytes(fr.MAX_FRAME_BYTES + 1024))) < 64 * 1024
    payload = {
        "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "garbage": (8).to_bytes(4, "big") + b"\xc1" * 8,  # 0xc1: never used in msgpack
        "garbage item": batch,
        "bad signature": batch,
        "oversized": b"\xff\xff\xff\xff" + b"\x00" * 64,
        "cut": batch[: len(batch) // 2],
        # the intact batch, then 9 MB of zeros: about 9 KB deflated
        "bomb": _compressed(batch, extra=bytes(fr.MAX_FRAME_BYTES + 1024)),
        "corrupt zlib": _corrupt(batch),
        "dictionary 7": _compressed(batch, dict_id=7),
    }[what]
    ctx = client_context(laptop / "root.crt", hostile)

    result = raw_tls_exchange(server.port, ctx, payload, close_after_send=what == "cut",
                              speak_as=None if what == "http" else hostile)

    if stage is not None:
        error = result.error_frame()
        assert error is not None and error[1] == stage, result
    server.wait_for_log(rf"session with {short(hostile)} .*failed: .*{logged}")
    assert stored_changes(laptop) == before  # not one change of the batch was kept
    assert_still_serving(net, server)
    assert server.stop() == 0


def test_the_same_raw_client_with_an_intact_batch_is_applied(net: Net) -> None:
    """Control for the hostile cases: the harness does deliver changes when nothing
    is spoiled, so 'nothing applied' above is the server's doing."""
    laptop, hostile = net.home("laptop"), net.home("phone-h")
    with open_node(hostile) as node:
        for i in range(3):
            node.put("voters", f"h-{i:04d}", {"nama": f"Contoh {i}", "status": "MS"})
    server = net.servers.start(laptop)
    before = count_changes(laptop)
    ctx = client_context(laptop / "root.crt", hostile)

    result = raw_tls_exchange(server.port, ctx, _hostile_batch(hostile, None),
                              speak_as=hostile, until=lambda frames: [fr.ACK, 1] in frames)

    assert [fr.ACK, 1] in result.frames, result
    assert count_changes(laptop) == before + 3
    assert server.stop() == 0


# -- interrupted large sync ---------------------------------------------------------------------

BIG = 100_000


def uncompressed(home: Path) -> None:
    """``compress = false`` in ``home``'s config.toml: its sessions send and receive
    frames as they are (docs/protocol.md, "Compressed frames")."""
    config = Home(home)
    config.write_config({**config.config(), "compress": False})


def _encoded_bytes(home: Path, after_seq: int) -> int:
    """Bytes of the wire items of ``home``'s own changes with seq > ``after_seq``, as a
    sync session packs them (one fresh encoder, like a new session: a receiver holding
    the feed's start is sent a short feed item, meshsync.protocol.stream)."""
    total = 0
    with open_node(home) as node:
        feed = (node.key.public_key, node.default_partition)
        encoder = SessionEncoder({feed: (0, after_seq)} if after_seq else {})
        for change in node.changes_since({feed: after_seq}, lambda f: f == feed):
            total += sum(len(msgpack.packb(i, use_bin_type=True))
                         for i in encoder.encode(change))
    return total


@pytest.mark.slow
def test_killed_100k_sync_resumes_with_only_the_remainder(net: Net) -> None:
    sender, receiver = net.home("phone-a"), net.home("phone-b")
    # Frames uncompressed, so the session's bytes can be held to the remainder's exact
    # encoding (compressed, everything could weigh less than the remainder alone);
    # compressed sessions are tests/test_frame_compression.py's and the hostile cases'.
    uncompressed(receiver)
    started = time.monotonic()
    write_many_changes(sender, BIG)
    setup_s = time.monotonic() - started
    assert count_changes(sender) == BIG
    server = net.servers.start(sender)
    relay = ByteCountingRelay(server.port)
    cmd = [*MESHSYNC, "sync", "--home", str(receiver), relay.address, "--json"]

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: count_changes(receiver) >= BIG // 3 or first.poll() is not None,
               timeout=90, what="a third of the changes to arrive")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=15)
    held = count_changes(receiver)  # what run 1 committed before it died
    assert BIG // 3 <= held < BIG, f"not killed midway: {held} of {BIG}"
    remainder = BIG - held
    expected, everything = _encoded_bytes(sender, held), _encoded_bytes(sender, 0)
    second_started = time.monotonic()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=150, check=False)
    second_s = time.monotonic() - second_started
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    relay.close()

    assert summary["changes_received"] == remainder and summary["duplicates"] == 0
    window = SessionConfig().window * fr.FRAME_TARGET_BYTES
    assert expected <= summary["bytes_received"] <= expected + window, (summary, expected)
    assert summary["converged"] is True
    assert count_changes(receiver) == BIG
    heads = [{(f["author"], f["partition"]): f["head"]
              for f in run_json("log", "--home", h)["feeds"]} for h in (sender, receiver)]
    assert heads[0] == heads[1]  # same head hash: the same 100,000-change chain
    assert server.stop() == 0
    wire = relay.connections
    assert len(wire) == 2
    # Both runs together carried one full sync plus at most the window run 1 had in
    # flight when it died, plus TLS framing (~0.2 %) and handshakes.
    assert wire[0]["to_client"] + wire[1]["to_client"] <= \
        (everything + window) * 1.01 + 2 * 16_384, (wire, everything)
    print(f"\n100k: setup {setup_s:.1f} s; run 1 killed at {held} changes after "
          f"{wire[0]['to_client']} TLS bytes in; run 2 {remainder} changes, "
          f"{summary['bytes_received']} session bytes (remainder encodes to {expected}), "
          f"{wire[1]['to_client']} TLS bytes in, {second_s:.1f} s; all changes encode "
          f"to {everything}")
