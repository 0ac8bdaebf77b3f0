"""Who may talk to the local API (issue 14: hostile neighbours on the Wi-Fi).

A web page the laptop visits can send requests to 127.0.0.1, and through DNS
rebinding (its own name resolving to 127.0.0.1) even read the answers. So:

* **Host.** Every request must name the API's own address in ``Host``:
  ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT`` (the bound host too), with
  exactly the bound port; anything else gets 421 naming the ``Host``
  (:class:`HostCheck`, a Starlette middleware, so 404s and the login route too).
  Starlette's own ``TrustedHostMiddleware`` is not used: it ignores the port and
  answers in plain text.
* **Credentials.** Every page and route but ``/login`` needs the token from the home
  (``Authorization: Bearer TOKEN``) or a browser session: the cookie that a one-time
  login link sets (HttpOnly, SameSite=Strict, Path=/). ``meshsync login`` asks the
  daemon for a link (``POST /api/login-links``); it works once, within
  :data:`LOGIN_TTL_S` seconds. Links and sessions live in the daemon's memory only
  (only their SHA-256 digests), so a restart logs every browser out.
* **Origin.** A write (POST, PUT, DELETE, PATCH) with an ``Origin`` must come from the
  API's own origin (``http://`` + its ``Host``); one without an ``Origin`` must carry
  the token (a non-browser client: the CLI, an app). A cookie alone never writes
  without the same-origin ``Origin`` browsers send.

Every refusal is the API's JSON error ``{"error": MESSAGE}`` (plus ``host`` or
``origin``): 421 foreign Host, 401 no or wrong credentials, 403 a write from another
origin or a used, expired or unknown login link.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: Seconds a login link stays valid (it also works only once).
LOGIN_TTL_S = 120
#: Browser sessions kept at most (the oldest is forgotten first).
MAX_SESSIONS = 32
#: Login links waiting at most (the oldest is forgotten first).
MAX_LINKS = 16
#: Methods that change state: they need a same-origin ``Origin`` or the token.
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
#: Names the API answers to (with its port), besides the address it is bound to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def refusal(status: int, message: str, **extra: str) -> JSONResponse:
    """The API's JSON error ``{"error": MESSAGE, ...extra}`` with ``status``."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=_NO_STORE)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _shown(text: str) -> str:
    """``text`` cut to 80 characters, for an error message."""
    return text if len(text) <= 80 else text[:80] + "…"


class ApiGuard:
    """The API's address, token, login links and browser sessions (see the module
    docstring). ``clock``: monotonic seconds (tests turn their own)."""

    def __init__(self, token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._token, self._clock = token, clock
        self._hosts: frozenset[str] = frozenset()
        self._own: str = "(not bound yet)"
        self.port: int | None = None
        self._links: dict[bytes, float] = {}  # digest -> expiry
        self._used: deque[bytes] = deque(maxlen=64)
        self._sessions: dict[bytes, None] = {}  # insertion-ordered: oldest first

    # -- the address ------------------------------------------------------------------

    def listen_on(self, binds: list[str]) -> None:
        """Take the bound address from hypercorn's ``["http://HOST:PORT"]``."""
        bound = binds[0].split("://", 1)[-1]
        host, _, port = bound.rpartition(":")
        names = {*LOOPBACK_NAMES, host.lower()}
        hosts = {f"{name}:{port}" for name in names}
        if port == "80":  # the default port may be left out
            hosts |= names
        self._hosts, self.port = frozenset(hosts), int(port)
        self._own = ", ".join(f"{name}:{port}" for name in LOOPBACK_NAMES)

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (a ``Host`` header) is this API's own address."""
        return host.lower() in self._hosts

    def host_refusal(self, host: str | None) -> JSONResponse | None:
        """421 naming ``host`` unless it is the API's own address; else None."""
        if host is not None and self.allows_host(host):
            return None
        given = "" if host is None else _shown(host)
        return refusal(421, f"Host {given!r} is not this API's address (it answers only "
                            f"to {self._own}). A web page reaching it under another name "
                            "is refused.", host=given)

    @property
    def cookie_name(self) -> str:
        """The session cookie's name; it names the port, as cookies ignore ports."""
        return f"meshsync_session_{self.port}" if self.port else "meshsync_session"

    # -- credentials ------------------------------------------------------------------

    def credential(self, request: Request) -> str | None:
        """``"token"`` (a right bearer token), ``"session"`` (a known session cookie
        and no Authorization header) or None."""
        header = request.headers.get("authorization")
        if header is not None:
            given = header.removeprefix("Bearer ").strip()
            right = bool(given) and hmac.compare_digest(given, self._token)
            return "token" if right else None
        cookie = request.cookies.get(self.cookie_name)
        return "session" if cookie and self.has_session(cookie) else None

    def request_refusal(self, request: Request) -> JSONResponse | None:
        """401 without credentials, 403 for a write from another origin; else None."""
        how = self.credential(request)
        if how is None:
            return refusal(401, "missing or wrong API token (see api.token in the home). "
                                "A browser logs in with the link that `meshsync login` "
                                "prints.")
        if request.method not in WRITE_METHODS:
            return None
        origin = request.headers.get("origin")
        if origin is None:
            if how == "token":
                return None
            return refusal(403, "A browser's write needs the Origin header of this API's "
                                "own page; other programs send the token instead.",
                           origin="")
        own = "http://" + request.headers.get("host", "").lower()
        if origin.lower() == own:
            return None
        return refusal(403, f"Origin {_shown(origin)!r} is not this API's own origin "
                            f"({own}): writes from other web pages are refused.",
                       origin=_shown(origin))

    def has_session(self, session: str) -> bool:
        """Whether ``session`` is a live browser session."""
        return _digest(session) in self._sessions

    # -- login links ------------------------------------------------------------------

    def new_link(self) -> str:
        """A new one-time login secret (valid :data:`LOGIN_TTL_S` seconds)."""
        self._forget_expired()
        while len(self._links) >= MAX_LINKS:
            del self._links[next(iter(self._links))]
        once = secrets.token_urlsafe(32)
        self._links[_digest(once)] = self._clock() + LOGIN_TTL_S
        return once

    def redeem(self, once: str) -> str:
        """Use the login secret ``once``: a new session; PermissionError saying why
        not (used, expired or unknown)."""
        digest = _digest(once)
        expiry = self._links.pop(digest, None)
        if digest in self._used:
            raise PermissionError("This login link was already used; run `meshsync "
                                  "login` for a new one.")
        self._used.append(digest)
        if expiry is None:
            raise PermissionError("This is not a login link of this daemon; run "
                                  "`meshsync login` for one.")
        if self._clock() > expiry:
            raise PermissionError(f"This login link has expired (links last {LOGIN_TTL_S} "
                                  "seconds); run `meshsync login` for a new one.")
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        session = secrets.token_urlsafe(32)
        self._sessions[_digest(session)] = None
        return session

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, expiry in self._links.items() if expiry < now]:
            del self._links[digest]

    # -- routes -----------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """``GET /login?once=SECRET``: set the session cookie and go to ``/``, or to the
        page ``&next=`` names on this API (``/app``, the officer's app, docs/app.md;
        ``/kpu/jila``; never another site). A HEAD (a link preview) is refused without
        using the link up."""
        if request.method != "GET":
            return JSONResponse({"error": "A login link is opened with GET, in a browser."},
                                status_code=405, headers={**_NO_STORE, "Allow": "GET"})
        try:
            session = self.redeem(request.query_params.get("once", ""))
        except PermissionError as exc:
            return refusal(403, str(exc))
        response = RedirectResponse(_next_page(request.query_params.get("next")),
                                    status_code=303, headers=_NO_STORE)
        response.set_cookie(self.cookie_name, session, path="/", httponly=True,
                            samesite="strict")
        return response

    async def login_link(self, request: Request) -> Response:
        """``POST /api/login-links``: ``{"url": LINK, "expires_in_s": SECONDS}``."""
        url = f"http://{request.headers['host']}/login?once={self.new_link()}"
        return JSONResponse({"url": url, "expires_in_s": LOGIN_TTL_S}, headers=_NO_STORE)


def _next_page(wanted: str | None) -> str:
    """Where a login goes: ``next`` if it is a plain path on this API with an optional
    query (``/kpu/jila?sort=pemilih``), else ``/`` (never another site: no ``//host``,
    scheme or backslash)."""
    if wanted and _LOCAL_PAGE.fullmatch(wanted):
        return wanted
    return "/"


_LOCAL_PAGE = re.compile(r"/(?:[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*)?"
                         r"(?:\?[A-Za-z0-9._~=&%-]*)?")


class HostCheck:
    """ASGI middleware: refuse (421) every request whose ``Host`` is not the API's
    own address (:meth:`ApiGuard.host_refusal`)."""

    def __init__(self, app: ASGIApp, guard: ApiGuard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer the refusal."""
        if scope["type"] == "http":
            refused = self.guard.host_refusal(Headers(scope=scope).get("host"))
            if refused is not None:
                await refused(scope, receive, send)
                return
        elif scope["type"] == "websocket":  # the API has none; never accept one
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
