"""One home, one writer (docs/architecture.md §9): where a writing command writes.

A command that writes to a home (``put``, ``delete``, ``bundle import``, ``coklit
import``, ``enroll``, ``rekey``) opens :func:`home_writer`. It yields

* a :class:`DaemonApi` when a daemon holds the home: the command sends its write to
  the daemon's local API, so the daemon's clock stamps it and its peers get it at once;
* None when the command itself took the home's lock (no daemon runs): it writes
  directly and frees the lock at the end. Another command holding the lock for its
  own write is waited for.

While ``meshsync serve`` holds the home (it has no API) a write is refused.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshsync.host.home import Home
from meshsync.host.lock import HomeBusyError, read_holder, try_lock
from meshsync.model.errors import MeshsyncError, NotFoundError, StorageLowError, UsageError
from meshsync.model.text import Msg

TOKEN_FILE = "api.token"  # noqa: S105 - a file name, not a secret
RUNTIME_FILE = "daemon.json"
#: Seconds a write waits for the home: for another command's write, or for a daemon
#: that holds the home to finish starting (its API is up once daemon.json names it).
WAIT_S = 60.0
#: Seconds one API request may take (a bundle or a voter list may be large).
API_TIMEOUT_S = 600.0
_POLL_S = 0.02

if TYPE_CHECKING:
    import urllib.request


@functools.cache
def _no_proxy() -> urllib.request.OpenerDirector:
    """An opener that ignores http_proxy from the environment (urllib would send the
    request, and its token, through it). urllib loads only when a daemon is asked:
    ``meshsync get`` on a home without a daemon never imports it."""
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def quote_segment(text: str) -> str:
    """``text`` percent-encoded as one URL path segment (``/`` included)."""
    from urllib.parse import quote

    return quote(text, safe="")


@dataclass(frozen=True)
class DaemonApi:
    """The local API of the daemon running on ``home`` (process ``pid``), reached at
    ``address`` (``HOST:PORT``) with ``token``."""

    home: Path
    pid: int
    address: str
    token: str

    def call(self, method: str, route: str, body: bytes | None = None,
             content_type: str = "application/json", *,
             timeout: float = API_TIMEOUT_S) -> object:
        """Send one request (waiting at most ``timeout`` seconds for the answer);
        returns the parsed JSON answer.

        Raises the error the daemon answered as the library would have raised it
        (:class:`NotFoundError` for 404, :class:`StorageLowError` for 507,
        :class:`UsageError` for another 4xx, :class:`MeshsyncError` otherwise), with
        the daemon's one-line message; :class:`MeshsyncError` if it does not answer.
        """
        import urllib.error
        import urllib.request

        from meshsync.host import i18n

        # The daemon words an error a person reads in this language (``message``).
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type,
                   "Accept-Language": i18n.current()}
        request = urllib.request.Request(f"http://{self.address}{route}", data=body,
                                         method=method, headers=headers)
        try:
            with _no_proxy().open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _answered_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MeshsyncError(Msg("the daemon (pid %(pid)s) on %(home)s did not answer at "
                                    "%(address)s: %(reason)s", pid=self.pid, home=self.home,
                                    address=self.address, reason=reason)) from None

    def call_json(self, method: str, route: str, payload: object = None
                  ) -> dict[str, object]:
        """:meth:`call` with ``payload`` sent as JSON (None: no body); the answer must
        be a JSON object (else :class:`MeshsyncError`)."""
        data = None if payload is None else json.dumps(payload).encode()
        return self._object(route, self.call(method, route, data))

    def post_bytes(self, route: str, data: bytes, content_type: str) -> dict[str, object]:
        """POST ``data`` (a file's bytes) to ``route``; the answer must be a JSON object."""
        return self._object(route, self.call("POST", route, data, content_type))

    def _object(self, route: str, answer: object) -> dict[str, object]:
        if not isinstance(answer, dict):
            raise MeshsyncError(f"the daemon on {self.home} answered {route} with "
                                f"{type(answer).__name__}, not an object")
        return answer


def _answered_error(status: int, raw: bytes) -> MeshsyncError:
    """The exception for an error answer ``{"error": MESSAGE}`` with HTTP ``status``
    (its ``message`` instead, in the reader's language, when the daemon sent one)."""
    try:
        answer = json.loads(raw)
        message = str(answer.get("message") or answer["error"])
    except (ValueError, KeyError, TypeError, AttributeError):
        message = f"the daemon answered HTTP {status}"
    if status == 404:
        return NotFoundError(message)
    if status == 507:
        return StorageLowError(message)
    return UsageError(message) if 400 <= status < 500 else MeshsyncError(message)


def running_daemon(home: Path) -> DaemonApi | None:
    """The API of the daemon whose ``daemon.json`` is in ``home``, or None if there is
    none (no daemon.json or api.token, or one that cannot be read)."""
    try:
        runtime = json.loads((home / RUNTIME_FILE).read_text())
        token = (home / TOKEN_FILE).read_text().strip()
        return DaemonApi(home, int(runtime["pid"]), str(runtime["api"]), token)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def home_writer(path: Path, *, wait_s: float = WAIT_S) -> Iterator[DaemonApi | None]:
    """Where to write to home ``path``: the daemon's API, or None with the home's lock
    held by this process until the ``with`` block ends (see the module docstring).

    Raises :class:`NotFoundError` if there is no home at ``path``,
    :class:`HomeBusyError` if ``meshsync serve`` holds it, or if it stays held for
    ``wait_s`` seconds without a daemon API to write through.
    """
    Home.open(path)
    deadline = time.monotonic() + wait_s
    while True:
        lock = try_lock(path, "cli")
        if lock is not None:
            with lock:
                yield None
            return
        holder = read_holder(path)
        if holder is not None and holder.kind == "serve":
            raise HomeBusyError(path, holder, Msg("it takes no writes; stop it, or run "
                                                  "`meshsync daemon`, which takes writes as "
                                                  "it syncs"))
        if holder is not None and holder.kind == "daemon":
            api = running_daemon(path)
            if api is not None and api.pid == holder.pid:
                yield api
                return
        if time.monotonic() > deadline:
            raise HomeBusyError(path, holder, Msg(
                "waited %(seconds)g s for it to finish (a daemon's API is named in %(file)s "
                "once it runs)", seconds=wait_s, file=RUNTIME_FILE))
        time.sleep(_POLL_S)
