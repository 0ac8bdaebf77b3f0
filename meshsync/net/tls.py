"""Mutual TLS 1.3 contexts from a node home, and the peer's identity after a handshake.

Every connection authenticates both ends against the authority root installed in
the home (``root.crt``); the device key that signs changes is the TLS key. Python's
``ssl`` has no per-connection verify callback, so revocation, role and scope are
checked right after the handshake with :meth:`meshsync.trust.TrustStore.peer_identity`
(docs/architecture.md §6).

**Validity time.** OpenSSL would check certificate validity (RFC 5280 §4.1.2.5)
against the device's own clock, so a phone whose date is wrong (1970, 2031) could
never connect. The contexts set OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME`` and
:func:`check_peer` checks validity right after the handshake at the node's time: the
clock, or the proven time when the clock is implausible (:mod:`meshsync.trust.proven`).
A certificate that expired before that time is still refused.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from meshsync.host.clock import clock_check
from meshsync.host.home import Home
from meshsync.host.local import ROOT_FILE
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.replica.node import Node
from meshsync.trust.proven import with_clock_note

#: OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME`` (x509_vfy.h); Python's ``ssl`` names no
#: constant for it but passes ``verify_flags`` through.
X509_V_FLAG_NO_CHECK_TIME = 0x200000


def _base_context(purpose: ssl.Purpose, home: Home) -> ssl.SSLContext:
    root = home.path / ROOT_FILE
    if not home.cert_path.exists() or not root.exists():
        raise UsageError(
            f"{home.path} is not enrolled (no device.crt / root.crt): sync needs a "
            "certificate from the authority; see `meshsync enroll`")
    try:
        ctx = ssl.create_default_context(purpose, cafile=str(root))
    except ssl.SSLError as exc:
        raise UsageError(f"cannot read the authority root {root}: {exc.reason or exc}; "
                         "install it again with `meshsync enroll`") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= X509_V_FLAG_NO_CHECK_TIME  # validity: check_peer, after the handshake
    try:
        ctx.load_cert_chain(certfile=str(home.cert_path), keyfile=str(home.key_path))
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot load this device's certificate {home.cert_path} with its "
                         f"key {home.key_path}: {getattr(exc, 'reason', None) or exc} (is one "
                         "of them damaged, or from another device?)") from exc
    return ctx


def server_context(home: Home) -> ssl.SSLContext:
    """Context for accepting connections: requires and verifies a client certificate."""
    return _base_context(ssl.Purpose.CLIENT_AUTH, home)


def client_context(home: Home) -> ssl.SSLContext:
    """Context for dialling: verifies the server against the root; peers are named by
    device key, not host name, so host-name checking is off."""
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, home)
    ctx.check_hostname = False
    return ctx


def check_peer(node: Node, chain: list[bytes]) -> tuple[bytes, str, str]:
    """Check the peer's verified TLS chain (DER, leaf first) with the node's trust store
    at the node's time: (device key, role, scope).

    When the clock is implausible the proven time is used as a lower bound (see
    :meth:`meshsync.trust.TrustStore.peer_identity`, ``at_least``) and a refusal's
    reason ends with the wrong-date sentence for the officer. Raises
    :class:`AuthorizationError` (no trust store, or the chain is refused).
    """
    checker = getattr(node.trust, "peer_identity", None)
    if checker is None:
        raise AuthorizationError("this node has no trust store (not enrolled)")
    check = clock_check(node)
    at_ms = node.now_ms() if check is None else check.effective_ms
    try:
        identity: tuple[bytes, str, str] = checker(
            chain, at_ms, at_least=check is not None and not check.plausible)
    except AuthorizationError as exc:
        raise AuthorizationError(with_clock_note(exc.detail, check)) from exc
    return identity


def peer_chain_der(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The peer's verified certificate chain, leaf first, as DER.

    Uses ``get_verified_chain`` (public from Python 3.13; the ``_sslobj`` method
    before), falling back to the leaf alone.
    """
    getter = getattr(ssl_object, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    if getter is not None:
        try:
            chain = getter()
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
        except (ssl.SSLError, AttributeError, ValueError):
            pass
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def describe_ssl_error(exc: BaseException) -> str:
    """A one-line reason for a TLS failure, naming the usual causes."""
    text = str(exc)
    hints = {
        "CERTIFICATE_VERIFY_FAILED": "peer certificate not issued by our authority "
                                     "(self-signed, another authority, or expired)",
        "UNKNOWN_CA": "the peer does not trust our certificate (not issued by its "
                      "authority: self-signed or another authority's)",
        "CERTIFICATE_REQUIRED": "the peer requires a client certificate",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client presented no certificate",
        "WRONG_VERSION_NUMBER": "the peer does not speak TLS",
        "CERTIFICATE_EXPIRED": "a certificate has expired",
    }
    for marker, hint in hints.items():
        if marker in text.upper():
            return f"{hint} ({text})"
    return text


def home_paths(home: Path) -> Home:
    """Open the home for TLS use."""
    return Home.open(home)
