"""Build an :class:`~meshsync.net.endpoints.Endpoint` from a node home."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.errors import UsageError
from meshsync.model.identity import sha256
from meshsync.model.text import Msg
from meshsync.net.endpoints import Endpoint
from meshsync.net.tls import client_context, server_context
from meshsync.protocol.session import SessionConfig
from meshsync.replica.share import check_share, default_share


def own_certificate(home: Home) -> tuple[str, str]:
    """``(role, scope)`` of the home's installed device certificate."""
    from cryptography import x509

    from meshsync.trust import parse_certificate

    if not home.cert_path.exists():
        raise UsageError(Msg("%(home)s is not enrolled: no device.crt (see meshsync enroll)",
                             home=home.path))
    try:
        leaf = x509.load_pem_x509_certificates(home.cert_path.read_bytes())[0]
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot read the device certificate {home.cert_path}: {exc}; "
                         "enrol again with the certificate the authority issued "
                         "(meshsync enroll)") from exc
    info = parse_certificate(leaf)
    if info.role is None or info.scope is None:
        raise UsageError(f"{home.cert_path} is not a device certificate")
    return info.role, info.scope


def session_config(home: Home, *, share: str | None = None,
                   mesh: str | None = None) -> SessionConfig:
    """Session settings from ``config.toml`` (``mesh``, ``share``, ``compress``: offer
    compressed frames, default true) and the certificate;
    ``share`` and ``mesh`` override the file. Without either, the share scope is the
    replica layer's share policy for the certificate's role and scope
    (:func:`meshsync.replica.share.default_share`)."""
    role, scope = own_certificate(home)
    config = home.config()
    mesh = mesh or config.get("mesh", "default")
    source = "share" if share is not None else f"{home.config_path}: share"
    share = share if share is not None else config.get("share", default_share(role, scope))
    if not isinstance(mesh, str) or not mesh:
        raise UsageError(f"{home.config_path}: 'mesh' must be a non-empty string")
    if not isinstance(share, str):
        raise UsageError(f"{home.config_path}: 'share' must be a partition prefix string")
    check_share(share, scope, source=source)
    compress = config.get("compress", True)
    if type(compress) is not bool:
        raise UsageError(f"{home.config_path}: 'compress' must be true or false")
    return SessionConfig(mesh_id=mesh, role=role, share_scope=share,
                         issue_receipts=role in ("gateway", "central"), compress=compress)


@contextmanager
def open_endpoint(path: Path, *, share: str | None = None, mesh: str | None = None,
                  store: str | None = None) -> Iterator[Endpoint]:
    """Open the node at ``path`` with its TLS contexts and session settings.

    ``store`` is a PostgreSQL DSN for central (default: the home's SQLite file).
    Raises :class:`UsageError` if the home is not enrolled.
    """
    home = Home.open(path)
    config = session_config(home, share=share, mesh=mesh)
    client, server = client_context(home), server_context(home)
    with open_node(path, store=store) as node:
        node.role = config.role
        # open_node's trust store holds every credential stored now (refresh_trust)
        loaded = {sha256(blob) for blob in node.store.credentials()}
        yield Endpoint(node, config, client, server, trio.CapacityLimiter(1),
                       loaded_credentials=loaded)
