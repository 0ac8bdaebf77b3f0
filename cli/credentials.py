"""Where the authority commands store the credentials they make (one home, one writer:
docs/architecture.md §9).

``authority revoke``, ``rotate``, ``install`` and ``schema publish`` open
:func:`credential_writer`. While a daemon holds the home, they read its store (to check
what they are asked) and send what they made to the daemon's ``POST /api/credentials``,
which stores it (a revocation quarantines there, in the process holding the store).
Otherwise they write directly, holding the home's lock. While ``meshsync serve`` holds
the home they are refused, as ``put`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from meshsync.cli.writer import DaemonApi, home_writer

from meshsync.host.home import Home
from meshsync.host.local import load_trust, open_node, open_store
from meshsync.store.base import Store


@dataclass
class CredentialWriter:
    """The home's trust policy and store (to check), and :meth:`add` to store a blob."""

    trust: object
    store: Store
    add: Callable[[bytes], bool]
    #: Blobs to send to the daemon when the ``with`` block ends (daemon only).
    pending: list[bytes] = field(default_factory=list)


@contextmanager
def credential_writer(path: Path) -> Iterator[CredentialWriter]:
    """Open home ``path`` for an authority command's credential writes (see the module
    docstring). Raises :class:`~meshsync.host.lock.HomeBusyError` while ``serve``
    holds it."""
    with home_writer(path) as api:
        if api is None:
            with open_node(path) as node:
                yield CredentialWriter(node.trust, node.store, node.add_credential)
            return
        with _through_daemon(path, api) as writer:
            yield writer


@contextmanager
def _through_daemon(path: Path, api: DaemonApi) -> Iterator[CredentialWriter]:
    """A read-only view of the store whose :meth:`CredentialWriter.add` keeps each blob
    in the view's trust policy (so later checks see it) and sends them all to the
    daemon at the end."""
    from meshsync.trust.pem import credentials_pem

    home = Home.open(path)
    store = open_store(home)
    try:
        trust = load_trust(home, store)
        pending: list[bytes] = []

        def add(blob: bytes) -> bool:
            adder = getattr(trust, "add", None)
            if adder is not None:
                adder(blob)
            pending.append(blob)
            return True

        yield CredentialWriter(trust, store, add, pending)
    finally:
        store.close()
    if pending:
        api.post_bytes("/api/credentials", credentials_pem(pending), "application/x-pem-file")
