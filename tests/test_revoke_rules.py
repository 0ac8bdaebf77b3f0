"""Who may revoke whom (meshsync.trust.revoke_rules), without the CLI: a sub-authority
only inside its scope and only a device it can see; never a revocation that changes
nothing. ``test_cli_authority.py`` runs the same rules through
``meshsync authority revoke``."""

from __future__ import annotations

import pytest
from test_trust import NOW, Authority, ms, new_root, new_sub

from meshsync.model.errors import UsageError
from meshsync.trust import TrustStore, make_revocation, parse_blob
from meshsync.trust.revoke_rules import check_given_certificate, check_revocable

OTHER = "mimika/kurik"


def trust_of(root: Authority, *blobs: bytes) -> TrustStore:
    store = TrustStore([root.pem])
    for blob in blobs:
        store.add(blob)
    return store


def test_the_root_may_revoke_any_device_known_or_not() -> None:
    root = new_root()
    device, _ = root.device()
    own = parse_blob(root.pem)[0]
    check_revocable(trust_of(root), own, device.public_key, None)


def test_a_sub_authority_revokes_only_inside_its_scope_and_what_it_can_see() -> None:
    root = new_root()
    jila, kurik = new_sub(root), new_sub(root, scope=OTHER, name="PPK Kurik")
    own = parse_blob(jila.pem)[0]
    ours, ours_cert = jila.device()
    theirs, theirs_cert = kurik.device(scope=OTHER)
    with pytest.raises(UsageError, match="holds no certificate of it"):
        check_revocable(trust_of(root, jila.pem), own, ours.public_key, None)
    check_revocable(trust_of(root, jila.pem, ours_cert), own, ours.public_key, 4)
    known = trust_of(root, jila.pem, kurik.pem, theirs_cert)
    with pytest.raises(UsageError, match="outside this sub-authority's scope"):
        check_revocable(known, own, theirs.public_key, None)
    given = parse_blob(theirs_cert + kurik.pem)
    with pytest.raises(UsageError, match="outside this sub-authority's scope"):
        check_given_certificate(own, theirs.public_key, given, "kurik.crt")
    with pytest.raises(UsageError, match=r"kurik\.crt is for"):
        check_given_certificate(own, ours.public_key, given, "kurik.crt")


def test_a_revocation_that_changes_nothing_is_refused_a_stricter_one_is_not() -> None:
    root = new_root()
    own = parse_blob(root.pem)[0]
    device, cert = root.device()
    store = trust_of(root, cert, make_revocation(root.key, root.pem, device.public_key, 5,
                                                 ms(NOW)))
    for same_or_later in (5, 9):
        with pytest.raises(UsageError, match="would change nothing"):
            check_revocable(store, own, device.public_key, same_or_later)
    check_revocable(store, own, device.public_key, 2)
    check_revocable(store, own, device.public_key, None)
