"""Mutual TLS 1.3 contexts from a node home, and the peer's identity after a handshake.

Every connection authenticates both ends against the authority root installed in
the home (``root.crt``); the device key that signs changes is the TLS key. Python's
``ssl`` has no per-connection verify callback, so revocation, role and scope are
checked right after the handshake with :meth:`meshsync.trust.TrustStore.peer_identity`
(docs/architecture.md §6).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from meshsync.host.home import Home
from meshsync.host.local import ROOT_FILE
from meshsync.model.errors import UsageError


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
