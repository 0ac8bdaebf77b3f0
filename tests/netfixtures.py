"""Real-process helpers for network tests: authorities, enrolled homes, ``meshsync serve``.

Everything goes through the real CLI (``python -m meshsync.cli.main``) except where a
test needs to be a *bad* peer (no certificate, garbage frames): those use ``ssl`` and
trio directly (:func:`raw_tls_exchange`). Traffic only ever goes to 127.0.0.1.

Waiting is polling with a deadline (:func:`wait_until`), never a fixed sleep. A
:class:`Relay` on 127.0.0.1 stands for the link between two nodes: it counts the bytes
each way and can be cut and restored. The process base :class:`ChildProcess` (log,
graceful stop, kill) is shared with ``daemonfixtures.DaemonProcess``.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.change import Put, sign_change
from meshsync.model.identity import DeviceKey
from meshsync.net.setup import session_config
from meshsync.protocol import frames as fr
from meshsync.protocol.peer import Peer
from meshsync.protocol.states import STREAMING
from meshsync.protocol.wire import WireEncoder
from meshsync.replica.crdt import RecordState
from meshsync.replica.node import Node, record_row
from meshsync.store import SQLiteStore
from meshsync.store.base import StoredChange

LOOPBACK = "127.0.0.1"
MESHSYNC = (sys.executable, "-m", "meshsync.cli.main")
DISTRICT = "mimika/jila"
VILLAGE = f"{DISTRICT}/diloa"

# -- the CLI -------------------------------------------------------------------------


def run(*args: object, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``meshsync ARGS``; with ``check``, fail with its stderr if it exits non-zero."""
    proc = subprocess.run([*MESHSYNC, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"meshsync {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr}{proc.stdout}")
    return proc


def run_json(*args: object) -> Any:
    """Run ``meshsync ARGS --json`` (must exit 0) and parse its output."""
    return json.loads(run(*args, "--json").stdout)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- authorities and homes -------------------------------------------------------------


@dataclass
class District:
    """A throwaway root authority (an admin node home) and the homes it enrolled."""

    root: Path
    authority: Path = field(init=False)

    def __post_init__(self) -> None:
        self.authority = self.root / "kpu"
        if not self.authority.exists():
            run("authority", "init", "--home", self.authority, "--name", "KPU Uji")

    def enrol(self, name: str, role: str = "pantarlih", scope: str = VILLAGE,
              partition: str | None = None) -> Path:
        """``init`` + ``authority issue`` + ``enroll`` a home called ``name``."""
        home = self.root / name
        run("init", "--home", home, "--partition", partition or scope)
        run("authority", "issue", "--home", self.authority, home / "device.csr",
            "--role", role, "--scope", scope, "-o", self.root / f"{name}.crt")
        run("enroll", "--home", home, self.root / f"{name}.crt")
        return home

    def revoke(self, home: Path) -> None:
        """Revoke every change of ``home``'s device; the revocation is stored at the
        authority home and travels with its next sync."""
        run("authority", "revoke", "--home", self.authority, device_id(home))

    def copy_to(self, dest: Path) -> District:
        """A copy of every home (same keys and certificates) under ``dest``."""
        shutil.copytree(self.root, dest)
        return District(dest)

    def home(self, name: str) -> Path:
        """Path of the home called ``name``."""
        return self.root / name


def device_id(home: Path) -> str:
    """The device id of ``home``."""
    return Home.open(home).load_key().device_id


def self_signed_home(district: District, name: str, scope: str = VILLAGE) -> Path:
    """A home whose device certificate follows the meshsync profile (role, scope,
    device URIs) but is signed by the device's own key, not by any authority. It
    trusts the district's root, so it is the *server* that must refuse it."""
    home = district.root / name
    run("init", "--home", home, "--partition", scope)
    key = Home.open(home).load_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} (self-signed)")])
    uris = [f"meshsync:device/{key.device_id}", "meshsync:role/pantarlih",
            f"meshsync:scope/{scope}"]
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.private_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                              ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
        .sign(key.private_key, None))
    (home / "device.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    shutil.copy(district.authority / "root.crt", home / "root.crt")
    return home


# -- meshsync serve ----------------------------------------------------------------------

_SERVING = re.compile(r"serving \S+ on 127\.0\.0\.1:(\d+)")


class ChildProcess:
    """A meshsync child process with its output in a log file: what ``meshsync serve``
    (:class:`ServerProcess`) and ``meshsync daemon`` (``daemonfixtures.DaemonProcess``)
    share.

    Subclasses start ``proc`` and set ``label`` (names the process in failures) and
    ``log_path``. :meth:`terminate` is the graceful stop: a signal, then a bounded wait;
    a process that ignores the signal is SIGKILLed and the test fails with its log.
    With ``fail_on_traceback`` the stop also fails when the log holds a Python
    traceback (a clean exit is code 0 *and* no traceback).
    """

    #: characters of the log a failure message quotes (its end: the latest lines)
    QUOTED_LOG_CHARS = 4000

    label: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    fail_on_traceback = False

    def log(self) -> str:
        """Everything the process wrote to its log so far."""
        return self.log_path.read_text("utf-8", errors="replace")

    def quoted_log(self) -> str:
        """The end of the log, for a failure message."""
        return self.log()[-self.QUOTED_LOG_CHARS:]

    def assert_alive(self) -> None:
        """Fail (with the log) if the process has exited."""
        assert self.proc is not None, f"{self.label} was never started"
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.label} exited {self.proc.returncode}:\n"
                                 f"{self.quoted_log()}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send ``sig`` (if still running), wait, return the exit code. SIGKILL and fail
        if it has not exited after ``timeout``; with ``fail_on_traceback``, fail if the
        log holds a traceback."""
        assert self.proc is not None, f"{self.label} was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.label} ignored {signal.Signals(sig).name} for "
                                     f"{timeout} s:\n{self.quoted_log()}") from None
        if self.fail_on_traceback:
            log = self.log()
            if (at := log.find("Traceback (most recent call last)")) >= 0:
                raise AssertionError(f"{self.label} logged a traceback:\n"
                                     f"{log[at:at + self.QUOTED_LOG_CHARS]}")
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (as a flat battery does) and reap; nothing if not running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ServerProcess(ChildProcess):
    """``meshsync serve --listen 127.0.0.1:0 -v`` with its stderr in a file.

    The port is read from the "serving ... on HOST:PORT" line, printed only once the
    listener is bound, so there is no free-port race and no probe connection.
    """

    fail_on_traceback = True

    def __init__(self, home: Path, log_path: Path) -> None:
        self.home, self.log_path = home, log_path
        self.label = f"meshsync serve on {home.name}"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*MESHSYNC, "serve", "--home", str(home), "--listen", f"{LOOPBACK}:0", "-v"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        self.port = int(wait_until(self._bound_port, 30, self.label))

    def _bound_port(self) -> str | None:
        self.assert_alive()
        found = _SERVING.search(self.log())
        return found.group(1) if found else None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` for ``meshsync sync``."""
        return f"{LOOPBACK}:{self.port}"

    def wait_for_log(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """Wait until a line of the log matches ``pattern`` (a regex); return the match."""
        regex = re.compile(pattern)
        return wait_until(lambda: regex.search(self.log()), timeout,  # type: ignore[no-any-return]
                          f"server log line /{pattern}/; log so far:\n{self.log()}")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, wait, return the exit code (see :meth:`ChildProcess.terminate`: fails
        if it does not exit or if the log holds a traceback)."""
        return self.terminate(signal.SIGTERM, timeout)


@dataclass
class Servers:
    """Starts servers for one test and always stops them at teardown."""

    logs: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(self, home: Path) -> ServerProcess:
        """Start ``meshsync serve`` on ``home`` and wait until it listens."""
        server = ServerProcess(home, self.logs / f"serve-{home.name}-{len(self.started)}.log")
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        """Stop whatever is still running (teardown)."""
        for server in self.started:
            server.kill()


def sync(home: Path, server: ServerProcess, *, check: bool = True) -> dict[str, Any]:
    """``meshsync sync --json`` from ``home``; the parsed summary plus ``rc`` and ``stderr``."""
    proc = run("sync", "--home", home, server.address, "--json", check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"sync exited {proc.returncode}: {proc.stderr}{proc.stdout}")
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return {**summary, "rc": proc.returncode, "stderr": proc.stderr}


# -- looking inside a home --------------------------------------------------------------


def count_changes(home: Path) -> int:
    """Changes held by ``home``, read through a read-only connection (safe while a
    process writes: WAL readers see the last committed transaction)."""
    uri = f"file:{home / 'store.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        return int(db.execute("SELECT count(*) FROM changes").fetchone()[0])


def stored_changes(home: Path) -> dict[tuple[bytes, str, int], tuple[bytes, bytes]]:
    """``(author, partition, seq) -> (body, sig)`` of every change stored in ``home``."""
    store = SQLiteStore(home / "store.sqlite")
    try:
        return {(f.author, f.partition, c.seq): (c.body, c.sig)
                for f in store.feeds() for c in store.iter_changes(f.feed)}
    finally:
        store.close()


# -- bad peers: raw TLS -------------------------------------------------------------------


def client_context(root: Path, cert_home: Path | None) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting ``root``; presents ``cert_home``'s certificate
    and key, or no certificate at all when it is None."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(root))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    if cert_home is not None:
        ctx.load_cert_chain(cert_home / "device.crt", cert_home / "device.key")
    return ctx


@dataclass
class RawResult:
    """What a raw client saw: decoded frames from the server and how the stream ended."""

    frames: list[list[Any]]
    error: str | None  # the TLS / stream error, if the connection broke

    def error_frame(self) -> list[Any] | None:
        """The server's ERROR frame ``[ERROR, stage, reason]``, if it sent one."""
        return next((f for f in self.frames if f and f[0] == fr.ERROR), None)


def raw_tls_exchange(port: int, ctx: ssl.SSLContext, payload: bytes, *,
                     speak_as: Path | None = None, close_after_send: bool = False,
                     until: Callable[[list[list[Any]]], bool] | None = None,
                     timeout: float = 15) -> RawResult:
    """Connect to 127.0.0.1:``port`` and complete TLS; with ``speak_as`` (a home), run
    that device's real session up to streaming first (see :class:`_Prelude`); send
    ``payload``; then read frames until the server closes, or until ``until(frames)``
    holds, or not at all with ``close_after_send``; then close."""
    return trio.run(_raw_tls, port, ctx, payload, speak_as, close_after_send, until, timeout)


class _Prelude:
    """A real :class:`~meshsync.protocol.peer.Peer` (session) of a home, used only to bring the
    server to streaming with protocol-correct HELLO, SUMMARY, VV and CRED frames (so
    the test does not restate the protocol); its own changes are never sent."""

    FORWARD = (fr.HELLO, fr.SUMMARY, fr.VV, fr.CRED)

    def __init__(self, node: Node, home: Path) -> None:
        self.session = Peer(node, session_config(Home.open(home)),
                            now_ms=time.time_ns() // 10**6)

    def output(self) -> bytes:
        """The session's pending frames that are part of the prelude (sent on
        uncompressed: a sender may leave any frame uncompressed)."""
        reader, kept = fr.FrameReader(), []
        reader.compression = self.session.session.compression
        reader.feed(self.session.data_to_send())
        while (got := reader.next_message()) is not None:
            if got[0][0] in self.FORWARD:
                kept.append(frame(got[0]))
        return b"".join(kept)

    def feed(self, data: bytes) -> bool:
        """Give the session the server's bytes; True once it is streaming."""
        self.session.receive_data(data, time.time_ns() // 10**6)
        return self.session.state in STREAMING


async def _raw_tls(port: int, ctx: ssl.SSLContext, payload: bytes, speak_as: Path | None,
                   close_after_send: bool, until: Callable[[list[list[Any]]], bool] | None,
                   timeout: float) -> RawResult:
    reader, error = fr.FrameReader(), None
    frames: list[list[Any]] = []
    with ExitStack() as stack, trio.fail_after(timeout):
        stream = trio.SSLStream(await trio.open_tcp_stream(LOOPBACK, port), ctx)
        try:
            await stream.do_handshake()
            if speak_as is not None:
                prelude = _Prelude(stack.enter_context(open_node(speak_as)), speak_as)
                await stream.send_all(prelude.output())
                while not prelude.feed(await stream.receive_some(65536)):
                    await stream.send_all(prelude.output())
                await stream.send_all(prelude.output())
                reader.compression = prelude.session.session.compression
            await stream.send_all(payload)
            while not close_after_send and not (until and until(frames)):
                data = await stream.receive_some(65536)
                reader.feed(data)
                while (got := reader.next_message()) is not None:
                    frames.append(got[0])
                if not data:
                    break
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            cause = exc.__cause__ or exc
            error = f"{type(cause).__name__}: {cause}"
        finally:
            with trio.move_on_after(2):
                await stream.aclose()
    return RawResult(frames, error)


def frame(message: list[Any]) -> bytes:
    """One length-prefixed protocol frame."""
    return fr.encode_frame(message)


def wire_items(home: Path) -> list[list[Any]]:
    """Wire items (actor, feed, change) of every change ``home`` holds, in feed order."""
    encoder = WireEncoder()
    with open_node(home) as node:
        return [item for change in node.changes_since({}) for item in encoder.encode(change)]


def write_many_changes(home: Path, count: int, collection: str = "kunjungan") -> None:
    """Append ``count`` one-op changes (one small record each) to ``home``'s own feed in
    its default partition, in one transaction (see :func:`append_changes`)."""
    append_changes(home, count,
                   lambda seq: Put(collection, f"k-{seq:07d}", {"status": "dikunjungi"}))


def append_changes(home: Path, count: int, put: Callable[[int], Put], *,
                   author: DeviceKey | None = None, partition: str | None = None) -> None:
    """Append ``count`` changes of one op each, ``put(seq)``, to a feed held by
    ``home``'s store, in one transaction: the feed of ``author`` (default: the home's
    own device) in ``partition`` (default: the home's default partition), continuing
    from its head. ``author`` need not be the home's device: the store then holds the
    changes as if a sync with that device had brought them.

    ``Node.put`` commits (and fsyncs) once per change, about 4,000 a second; this
    signs each change the same way (:func:`~meshsync.model.change.sign_change`) and stores it
    with the store's own ``append_change``/``save_record``, about 12,000 a second.
    """
    with open_node(home) as node:
        author = author or node.key
        partition = partition or node.default_partition
        feed = (author.public_key, partition)
        with node.store.transaction():
            head = node.store.feed_head(feed)
            seq, prev = (head.head_seq, head.head_hash) if head else (0, b"")
            now = node.now_ms()
            for _ in range(count):
                seq += 1
                op = put(seq)
                hlc = node.hlc.reserve(now, 1)
                change = sign_change(author, partition, seq, prev, hlc, (op,))
                state = RecordState()
                state.apply_put(change.op_id(0), op.fields, ())
                node.store.append_change(
                    feed, StoredChange(seq, change.hash, change.body, change.sig), hlc)
                node.store.save_record(record_row((partition, op.collection, op.key), state))
                prev = change.hash
            node.save_clock()


# -- relays: counting bytes, cutting links -----------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 in front of a server: every connection made to
    :attr:`address` is relayed to ``target`` by two pumps (one each way), counting
    the bytes each way (TLS records included: what a radio or modem would carry).

    ``target`` is a port on 127.0.0.1 or ``"HOST:PORT"``; it may be None and set later
    (``relay.target = port``), for a relay a daemon must be told of before the server
    behind it runs. While the relay is down (``up=False`` at first, or after
    :meth:`cut`) a new connection is accepted and ended at once, as a dead route looks
    to TLS, and counted in :attr:`refused`; :meth:`restore` relays again.

    A connection ends (a pump reaching EOF or an error, or :meth:`cut`) by shutting
    both sockets down, which ends the other direction's pump too; with ``reset`` the
    close sends a TCP reset (SO_LINGER 0), as a broken link looks to the peers,
    instead of an orderly FIN.

    Counts: :attr:`connections` holds ``{"to_server": n, "to_client": n}`` per relayed
    connection; :attr:`to_server` and :attr:`to_client` are their sums and
    :attr:`since_cut` the bytes to the server since the last cut. Set :attr:`cut_after`
    to a byte count to have the relay cut by itself once :attr:`since_cut` reaches it
    (exactly there, however fast the sync runs); :attr:`cuts` counts the cuts.
    """

    def __init__(self, target: int | str | None, *, up: bool = True,
                 reset: bool = False) -> None:
        self.target = target
        self.reset = reset
        self.connections: list[dict[str, int]] = []
        self.refused = 0
        self.since_cut = 0
        self.cut_after: int | None = None
        self.cuts = 0
        self._up = up
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._relays: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` to dial (or give as a peer) instead of the server."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def to_server(self) -> int:
        """Bytes relayed to the server, over every connection."""
        return sum(c["to_server"] for c in self.connections)

    @property
    def to_client(self) -> int:
        """Bytes relayed back to the clients, over every connection."""
        return sum(c["to_client"] for c in self.connections)

    def cut(self) -> None:
        """End every relayed connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            self._up = False
            cut, self._open = self._open, set()
            self.since_cut = 0
            self.cut_after = None
            self.cuts += 1
        for sock in cut:
            self._end(sock)

    def restore(self) -> None:
        """Relay new connections (again)."""
        with self._lock:
            self._up = True

    def close(self, timeout: float = 15) -> None:
        """Stop accepting and wait for the relayed connections to end (call :meth:`cut`
        first to end them)."""
        with suppress(OSError):  # wakes the accept() blocked in its thread; close() would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accept.join(timeout)
        for thread in self._relays:
            thread.join(timeout)

    def _end(self, sock: socket.socket) -> None:
        """Shut ``sock`` down (wakes any thread blocked on it); with ``reset``, so that
        its close sends a TCP reset."""
        if self.reset:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _dial(self) -> socket.socket | None:
        """A connection to the target, or None while down, without a target, or when
        the target does not answer."""
        with self._lock:
            target = self.target if self._up else None
        if target is None:
            return None
        host, port = (LOOPBACK, target) if isinstance(target, int) else \
            (target.rpartition(":")[0], int(target.rpartition(":")[2]))
        try:
            upstream = socket.create_connection((host, port), timeout=5)
        except OSError:
            return None
        upstream.settimeout(None)
        return upstream

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._dial()
            counts = {"to_server": 0, "to_client": 0}
            with self._lock:
                relay = upstream is not None and self._up  # not cut while dialling
                if relay:
                    self._open |= {client, upstream}
                    self.connections.append(counts)
                else:
                    self.refused += 1
            if not relay:
                for sock in (client, upstream):
                    if sock is not None:
                        self._end(sock)
                        sock.close()
                continue
            thread = threading.Thread(target=self._relay, args=(client, upstream, counts),
                                      daemon=True)
            thread.start()
            self._relays.append(thread)

    def _relay(self, client: socket.socket, upstream: socket.socket,
               counts: dict[str, int]) -> None:
        back = threading.Thread(target=self._pump, args=(upstream, client, counts, "to_client"),
                                daemon=True)
        back.start()
        self._pump(client, upstream, counts, "to_server")
        back.join()
        with self._lock:
            self._open -= {client, upstream}
        client.close()  # only now: a pump never uses a descriptor closed under it
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, counts: dict[str, int],
              key: str) -> None:
        """Copy until EOF or error, counting into ``counts[key]``; then end both
        sockets (the other direction's pump ends too)."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self._lock:
                    counts[key] += len(data)
                    if key == "to_server":
                        self.since_cut += len(data)
                    trip = self.cut_after is not None and self.since_cut >= self.cut_after
                if trip:
                    self.cut()
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._end(sock)


class ByteCountingRelay(Relay):
    """A TCP relay on 127.0.0.1 in front of the server on ``target_port``, always up,
    counting the bytes of every connection each way (:attr:`Relay.connections`)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
