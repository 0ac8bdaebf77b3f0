"""The proven-time rule and what the trust store learns it from (library level).

The real-process side (a phone under faketime at 1970 and 2031) is in
``test_wrong_date.py``; these pin the rule's edges and its sources.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshsync.model.errors import AuthorizationError
from meshsync.model.identity import DeviceKey
from meshsync.trust import TrustStore, make_revocation, parse_blob
from meshsync.trust.proven import (
    AHEAD_LIMIT_MS,
    BEHIND_TOLERANCE_MS,
    MESSAGES,
    judge,
    with_clock_note,
)
from tests.test_trust import NOW, Authority, first, ms, new_root, new_sub

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def root() -> Authority:
    return new_root()


def test_the_rule() -> None:
    proven = ms(NOW)
    assert judge(proven, 0).plausible  # nothing proven: the clock is believed
    assert judge(proven - BEHIND_TOLERANCE_MS, proven).plausible
    assert not judge(proven - BEHIND_TOLERANCE_MS - 1, proven).plausible
    assert judge(proven + AHEAD_LIMIT_MS, proven).plausible
    assert not judge(proven + AHEAD_LIMIT_MS + 1, proven).plausible
    assert judge(0, proven).effective_ms == proven
    assert judge(proven + 5, proven).effective_ms == proven + 5


def test_messages_are_whole_sentences_with_named_placeholders() -> None:
    for text in MESSAGES.values():
        assert "{device_date}" in text and "{network_date}" in text and text.endswith(".")
    check = judge(0, ms(NOW))
    assert check.message() == (
        "This phone's date is 1970-01-01 00:00 UTC, but the network's date is at least "
        "2025-03-01 08:00 UTC. Fix the date in the phone's settings. Until then meshsync "
        "keeps working with the network's date.")
    assert check.to_json()["network_date"] == "2025-03-01T08:00Z"
    assert with_clock_note("refused", check).startswith("refused. This phone's date")
    assert with_clock_note("refused", judge(ms(NOW), ms(NOW))) == "refused"


def test_certificates_and_revocations_teach_the_time(root: Authority) -> None:
    store = TrustStore([root.pem])
    start = parse_blob(root.pem)[0].not_before * 1000
    assert store.proven_ms == start
    later = NOW + timedelta(days=30)
    device, cert = root.device(now=later)
    store.add(cert)
    assert store.proven_ms == parse_blob(cert)[0].not_before * 1000
    revocation = make_revocation(root.key, root.pem, device.public_key, 3,
                                 ms(later + timedelta(days=1)))
    store.add(revocation)
    assert store.proven_ms == ms(later + timedelta(days=1))


def test_receipt_times_count_only_from_a_gateway_within_its_validity(root: Authority) -> None:
    store = TrustStore([root.pem])
    phone, phone_cert = root.device()
    gateway, gateway_cert = root.device(role="gateway", scope="mimika/jila", days=30)
    store.add(phone_cert)
    store.add(gateway_cert)
    base = store.proven_ms
    assert not store.note_signed_time(phone.public_key, base + DAY_MS)  # not a gateway
    assert not store.note_signed_time(gateway.public_key, base + 60 * DAY_MS)  # after its end
    assert not store.note_signed_time(DeviceKey.generate().public_key, base + DAY_MS)
    assert store.proven_ms == base
    assert store.note_signed_time(gateway.public_key, base + DAY_MS)
    assert store.proven_ms == base + DAY_MS


def test_peer_checked_at_a_lower_bound(root: Authority) -> None:
    sub = new_sub(root)
    store = TrustStore([root.pem])
    _key, cert = sub.device(now=NOW + timedelta(days=10), days=5)
    chain = [first(cert), first(sub.pem)]
    bound = ms(NOW)  # before the certificate's start: a lower bound only
    with pytest.raises(AuthorizationError, match="not valid before"):
        store.peer_identity(chain, bound)
    store.peer_identity(chain, bound, at_least=True)
    assert store.proven_ms == parse_blob(cert)[0].not_before * 1000
    with pytest.raises(AuthorizationError, match="expired"):  # really expired: still refused
        store.peer_identity(chain, ms(NOW + timedelta(days=20)), at_least=True)


def test_a_root_of_another_date_still_starts_the_bound() -> None:
    assert TrustStore([new_root().pem]).proven_ms == ms(NOW) - 3600 * 1000
