"""``meshsync daemon`` as a real process on 127.0.0.1, for tests that run daemons.

:class:`DaemonProcess` is one daemon on one home: its settings (always
``discovery = ["static"]``: the default cascade would send mDNS multicast and UDP
broadcasts and dial the default gateway on the real network), its start (returns once
``daemon.json`` names this process, with the bound ports), its local API (JSON with
the home's token, never through a proxy), its peer table and its stop. :func:`http`
is one request to that API as any client would make it (token or not).

Used by ``test_daemon.py`` (and the tests that borrow its fixtures) and
``test_gateway_central.py``; the stop, the log and the relays that stand for a link
between daemons are in :mod:`netfixtures` (:class:`~netfixtures.ChildProcess`,
:class:`~netfixtures.Relay`), shared with ``meshsync serve``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from netfixtures import LOOPBACK, MESHSYNC, ChildProcess, District, device_id, wait_until

from meshsync.host.home import Home

# -- the local API ----------------------------------------------------------------------


@dataclass
class ApiReply:
    """An HTTP reply: status and the body parsed as JSON (or the text if it is not)."""

    status: int
    body: Any
    content_type: str


#: urllib would send a request through http_proxy from the environment.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, token: str | None = None, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 15) -> ApiReply:
    """One HTTP request to 127.0.0.1 with urllib; never raises for an HTTP status."""
    assert url.startswith(f"http://{LOOPBACK}:"), url
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with NO_PROXY.open(request, timeout=timeout) as response:
            status, raw, ctype = response.status, response.read(), \
                response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return ApiReply(status, parsed, ctype)


# -- the daemon ---------------------------------------------------------------------------


class DaemonProcess(ChildProcess):
    """``meshsync daemon --home HOME -v`` with stdout and stderr appended to ``log_path``.

    ``settings`` are the daemon's configuration; ``listen`` and ``api`` default to
    127.0.0.1 port 0 (the kernel picks; the bound ports are read from ``daemon.json``),
    ``discovery`` is always ``["static"]``. They are written to ``config_path`` and
    given with ``--config`` when one is named, else merged into the home's own
    ``config.toml``. ``args`` are more command-line arguments (``--store``, ``--role``).

    A log path used again (a restart) is appended to, so it holds every run.
    """

    #: seconds an API call may take (central answers slowly while it ingests)
    API_TIMEOUT = 30.0

    def __init__(self, home: Path, log_path: Path, settings: Mapping[str, Any], *,
                 config_path: Path | None = None, args: Sequence[str] = (),
                 stop_timeout: float = 15) -> None:
        self.home, self.log_path, self.config_path = home, log_path, config_path
        self.stop_timeout = stop_timeout
        self.name = home.name
        self.label = f"daemon {home.name}"
        values = {"listen": f"{LOOPBACK}:0", "api": f"{LOOPBACK}:0", **settings,
                  "discovery": ["static"]}  # never the real network (module docstring)
        if config_path is None:
            config = Home.open(home)
            config.write_config({**config.config(), **values})
            self.args = ["-v", *args]
        else:
            config_path.write_text("".join(f"{k} = {json.dumps(v)}\n"
                                           for k, v in values.items()))
            self.args = ["--config", str(config_path), "-v", *args]
        self.runtime: dict[str, Any] = {}

    def start(self, timeout: float = 30, interval: float = 0.05) -> Self:
        """Start the process and wait until ``daemon.json`` names it: its API and
        listener are up (a file left behind by a killed predecessor is never taken
        for it)."""
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*MESHSYNC, "daemon", "--home", str(self.home), *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.runtime = wait_until(self._runtime, timeout, f"{self.label} to start",
                                  interval=interval)
        return self

    def _runtime(self) -> dict[str, Any] | None:
        """``daemon.json`` once it is this process's (fails if the process exited)."""
        self.assert_alive()
        assert self.proc is not None
        try:
            data = json.loads((self.home / "daemon.json").read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("pid") == self.proc.pid else None  # type: ignore[no-any-return]

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Send ``sig``, wait (``timeout``, else ``stop_timeout``), return the exit code
        (SIGKILL and fail if it ignores the signal; see
        :meth:`~netfixtures.ChildProcess.terminate`)."""
        return self.terminate(sig, self.stop_timeout if timeout is None else timeout)

    # what daemon.json and the home say

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the local API."""
        return f"http://{self.runtime['api']}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the sync listener (to give as a peer or uplink)."""
        return str(self.runtime["listen"])

    @property
    def listen_port(self) -> int:
        """The bound sync port."""
        return int(self.runtime["listen"].rpartition(":")[2])

    @property
    def token(self) -> str:
        """The API token (``api.token`` in the home)."""
        return (self.home / "api.token").read_text().strip()

    @property
    def device_id(self) -> str:
        return device_id(self.home)

    # the API

    def request(self, method: str, path: str, body: Any = None,
                token: str | None = "") -> ApiReply:
        """A request to the API: ``body`` as bytes or as JSON; ``token=""`` means this
        home's token, None none. Never raises for an HTTP status."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        return http(method, self.api_url + path, self.token if token == "" else token, data,
                    timeout=self.API_TIMEOUT)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A request with the token; the parsed body (fails unless the status is 2xx)."""
        reply = self.request(method, path, body)
        if not 200 <= reply.status < 300:
            raise AssertionError(f"{method} {path} on {self.name}: {reply.status} {reply.body}")
        return reply.body

    def get(self, path: str) -> Any:
        """GET with the token; the parsed body."""
        return self.api("GET", path)

    def listing(self, path: str, limit: int | None = None) -> list[Any]:
        """Every record of a paged listing (``path``: records or conflicts), following
        its ``next`` cursors (``limit`` records per page, else the API's default)."""
        records: list[Any] = []
        query = "" if limit is None else f"limit={limit}"
        while True:
            glue = "&" if "?" in path else "?"
            page = self.get(path + (glue + query if query else ""))
            records += page["records"]
            if page["next"] is None:
                return records
            query = "&".join(q for q in (f"limit={limit}" if limit else "",
                                         f"after={page['next']}") if q)

    def status(self) -> dict[str, Any]:
        """``GET /api/status``."""
        return self.get("/api/status")  # type: ignore[no-any-return]

    def put(self, collection: str, key: str, fields: dict[str, Any],
            partition: str | None = None) -> Any:
        """Put a record (in ``partition``, else the home's default); the stored record."""
        body: dict[str, Any] = {"fields": fields}
        if partition is not None:
            body["partition"] = partition
        return self.api("PUT", f"/api/records/{collection}/{key}", body)

    def peer(self, other: DaemonProcess) -> dict[str, Any] | None:
        """This daemon's peer-table row for ``other``, if it has one."""
        return next((p for p in self.get("/api/peers") if p["device_id"] == other.device_id),
                    None)

    def synced_with(self, other: DaemonProcess, sessions: int = 1) -> bool:
        """Whether this daemon finished ``sessions`` sessions with ``other``."""
        row = self.peer(other)
        return row is not None and row["sessions_ok"] >= sessions


# -- one test's daemons ---------------------------------------------------------------------


@dataclass
class DaemonLab:
    """One test's copy of the enrolled homes (:meth:`copy_of` a module's template), the
    daemons it made and whatever else must be closed at its end (relays): at
    :meth:`close`, every daemon still running is SIGKILLed, then each closer runs."""

    district: District
    logs: Path
    daemons: list[DaemonProcess] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    @contextmanager
    def copy_of(cls, template: Path, tmp_path: Path, name: str) -> Iterator[Self]:
        """A lab on a copy of the district at ``template`` in ``tmp_path/name``, with
        ``tmp_path/logs`` for the logs; closed on leaving."""
        logs = tmp_path / "logs"
        logs.mkdir()
        lab = cls(District(template).copy_to(tmp_path / name), logs)
        try:
            yield lab
        finally:
            lab.close()

    def home(self, name: str) -> Path:
        """Path of the home called ``name``."""
        return self.district.home(name)

    def add(self, daemon: DaemonProcess) -> DaemonProcess:
        """Keep ``daemon`` for :meth:`close`; returns it."""
        self.daemons.append(daemon)
        return daemon

    def close(self) -> None:
        """Kill every daemon still running, then run the closers."""
        for daemon in self.daemons:
            daemon.kill()
        for closer in self.closers:
            closer()
