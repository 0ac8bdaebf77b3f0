"""Protocol version 4 (compressed frames) refuses an older peer by name, on both ends,
over real TLS sockets: a ``meshsync serve`` answering a client that speaks the
version-3 HELLO, and ``meshsync sync`` dialling a server that speaks it. Each side
says which version must upgrade ("upgrade meshsync"; Indonesian: "perbarui meshsync"),
stores nothing, and the server goes on serving other peers."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from meshsync.daemon.laptop_page import phone_rows
from netfixtures import (
    DISTRICT,
    MESHSYNC,
    VILLAGE,
    District,
    Servers,
    client_context,
    count_changes,
    frame,
    raw_tls_exchange,
    run,
    sync,
)

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.net.tls import server_context
from meshsync.protocol import frames as fr
from meshsync.protocol.session import SessionConfig, SessionError, SyncSession

OLD = 3  # the protocol version before compressed frames


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> District:
    """A laptop (gateway) and two phones of one village, enrolled once."""
    ours = District(tmp_path_factory.mktemp("wire-version") / "ours")
    ours.enrol("laptop", "gateway", DISTRICT)
    for name, tps in (("phone-a", "tps-001"), ("phone-b", "tps-002")):
        ours.enrol(name, scope=VILLAGE, partition=f"{VILLAGE}/{tps}")
    run("put", "--home", ours.home("phone-a"), "voters", "v-1", "nama=Yosina Contoh")
    return ours


@pytest.fixture
def homes(district: District, tmp_path: Path) -> District:
    return district.copy_to(tmp_path / "ours")


def old_hello(home: Path) -> bytes:
    """The HELLO a version-3 device of ``home`` sends (no ``zlib`` field)."""
    with open_node(home) as node:
        device = node.key.public_key
    return frame([fr.HELLO, {"proto": OLD, "mesh": "default", "device": device,
                             "role": "pantarlih", "scope": VILLAGE,
                             "clock_ms": time.time_ns() // 10**6}])


NAMED = (f"meshsync protocol version {OLD} cannot sync with version {fr.PROTOCOL_VERSION}: "
         f"upgrade meshsync on the device that speaks version {OLD}")


def test_a_server_refuses_a_version_3_client_by_name(homes: District, tmp_path: Path) -> None:
    laptop, old = homes.home("laptop"), homes.home("phone-a")
    servers = Servers(tmp_path)
    try:
        server = servers.start(laptop)
        before = count_changes(laptop)
        result = raw_tls_exchange(server.port, client_context(laptop / "root.crt", old),
                                  old_hello(old))
        error = result.error_frame()
        assert error is not None and error[1:3] == ["version", NAMED], result
        server.wait_for_log(rf"failed: version: {NAMED}")
        assert count_changes(laptop) == before
        # the server goes on serving a current peer
        summary = sync(homes.home("phone-b"), server)
        assert summary["rc"] == 0 and summary["converged"] and summary["error"] is None
        assert server.stop() == 0
    finally:
        servers.stop_all()


class OldServer:
    """A TLS server with ``home``'s certificate that speaks the version-3 HELLO and
    records every frame the client sends (until the client closes)."""

    def __init__(self, home: Path) -> None:
        self.ctx = server_context(Home.open(home))
        self.hello = old_hello(home)
        self.frames: list[list[Any]] = []
        self.port = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        assert self._ready.wait(15)

    async def _main(self) -> None:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listener.socket.getsockname()[1]
        self._ready.set()
        with trio.fail_after(60):
            raw = await listener.accept()
            stream = trio.SSLStream(raw, self.ctx, server_side=True)
            await stream.do_handshake()
            await stream.send_all(self.hello)
            reader = fr.FrameReader()
            while data := await stream.receive_some(65536):
                reader.feed(data)
                while (got := reader.next_message()) is not None:
                    self.frames.append(got[0])
            with trio.move_on_after(2):
                await stream.aclose()
            await listener.aclose()


@pytest.mark.parametrize(("lang", "said"), [
    ("en", "upgrade meshsync on the device that speaks version 3"),
    ("id", "perbarui meshsync di perangkat yang memakai versi 3")])
def test_sync_refuses_a_version_3_server_by_name(homes: District, lang: str,
                                                  said: str) -> None:
    phone, old = homes.home("phone-b"), homes.home("laptop")
    before = count_changes(phone)
    server = OldServer(old)
    proc = subprocess.run([*MESHSYNC, "--lang", lang, "sync", "--home", str(phone),
                           f"127.0.0.1:{server.port}"], capture_output=True, text=True,
                          timeout=60, check=False)
    server.thread.join(30)
    assert proc.returncode == 1, proc
    (line,) = proc.stderr.strip().splitlines()
    assert said in line and "version:" in line, line
    # the old server was told why, in English (the wire's language)
    errors = [f for f in server.frames if f[0] == fr.ERROR]
    assert [e[1:3] for e in errors] == [["version", NAMED]], server.frames
    assert count_changes(phone) == before


def test_the_laptop_page_names_the_upgrade_in_the_readers_language() -> None:
    """The refusal a daemon keeps as a peer's last error (the session summary's, a core
    message) is shown translated on the PPK laptop's page."""
    session = SyncSession(SessionConfig(), device=b"p" * 32, now_ms=0)
    with pytest.raises(SessionError):
        session.receive_data(frame([fr.HELLO, {"proto": OLD}]), 0)
    error = session.summary.error
    peer = {"device_id": "x" * 52, "failures": 2, "last_error": error, "addresses": []}
    (row,) = phone_rows([peer], {}, {}, "id")
    assert row["state"] == "failing"
    assert row["error"] == ("version: protokol meshsync versi 3 tidak dapat sinkron dengan "
                            "versi 4: perbarui meshsync di perangkat yang memakai versi 3")
    (row,) = phone_rows([peer], {}, {}, "en")
    assert row["error"] == f"version: {NAMED}"
