"""meshsync.trust: certificates, revocations and the trust store, with real crypto."""

from __future__ import annotations

import ast
import contextlib
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import meshsync.trust
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import DeviceKey, device_id
from meshsync.trust import (
    NOT_BEFORE_MARGIN,
    NOT_REVOKED,
    ROLE_MAY_WRITE,
    ROLES,
    AuthorityKey,
    TrustStore,
    armor,
    create_authority,
    generate_authority_key,
    issue_device_certificate,
    issue_sub_authority,
    load_csr,
    make_csr,
    make_revocation,
    parse_blob,
    scope_contains,
    validate_scope,
)

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
JILA = "mimika/jila"
TPS = "mimika/jila/diloa/tps-003"


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class Authority:
    key: AuthorityKey
    pem: bytes  # certificate, then its chain up to the root

    def device(
        self,
        role: str = "pantarlih",
        scope: str = "mimika/jila/diloa",
        now: datetime = NOW,
        days: int = 365,
        name: str = "Officer Contoh",
        key: DeviceKey | None = None,
    ) -> tuple[DeviceKey, bytes]:
        device = key or DeviceKey.generate()
        cert = issue_device_certificate(
            self.key, self.pem, make_csr(device, name), role=role, scope=scope, now=now, days=days
        )
        return device, cert


def new_root(name: str = "KPU Mimika", now: datetime = NOW, days: int = 3650) -> Authority:
    key, pem = create_authority(name, now, days)
    return Authority(key, pem)


def new_sub(
    root: Authority, scope: str = JILA, name: str = "PPK Jila", days: int = 1825
) -> Authority:
    key = generate_authority_key()
    cert = issue_sub_authority(
        root.key, root.pem, key.public_key(), name=name, scope=scope, now=NOW, days=days
    )
    return Authority(key, cert + root.pem)


def first(pem: bytes) -> bytes:
    return parse_blob(pem)[0].der


@pytest.fixture
def root() -> Authority:
    return new_root()


@pytest.fixture
def sub(root: Authority) -> Authority:
    return new_sub(root)


# -- scopes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "partition", "inside"),
    [
        ("mimika/jila", "mimika/jila", True),
        ("mimika/jila", "mimika/jila/diloa", True),
        ("mimika/jila", "mimika/jila/diloa/tps-003", True),
        ("mimika/jila", "mimika/jilab", False),
        ("mimika/jila", "mimika/jilab/diloa", False),
        ("mimika/jila", "mimika", False),
        ("mimika/jila", "timika/jila", False),
        ("", "mimika/jila", True),
        ("", "anything", True),
    ],
)
def test_scope_is_matched_by_whole_segments(scope: str, partition: str, inside: bool) -> None:
    assert scope_contains(scope, partition) is inside


segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
path = st.lists(segment, min_size=1, max_size=4).map("/".join)


@given(path, path, segment)
def test_scope_property(scope: str, rest: str, tail: str) -> None:
    assert scope_contains(scope, scope)
    assert scope_contains(scope, f"{scope}/{rest}")
    assert not scope_contains(scope, scope + tail)  # e.g. jila → jilab
    assert scope_contains("", rest)


@pytest.mark.parametrize("bad", ["/mimika", "mimika/", "mimika//jila", "a\nb", "x" * 300])
def test_validate_scope_refuses(bad: str) -> None:
    with pytest.raises(UsageError):
        validate_scope(bad)


# -- issuing and authorising ----------------------------------------------------------


def test_root_to_device(root: Authority) -> None:
    device, cert = root.device(scope=JILA)
    store = TrustStore([root.pem])
    assert store.add(cert) == "certificate"
    assert store.add(cert) is None
    store.authorize_change(device.public_key, TPS, 1, ms(NOW))
    with pytest.raises(AuthorizationError, match="outside certificate scope") as err:
        store.authorize_change(device.public_key, "mimika/agimuga/x", 1, ms(NOW))
    assert device.device_id[:8] in str(err.value)


def test_root_to_sub_authority_to_device(root: Authority, sub: Authority) -> None:
    device, cert = sub.device()
    store = TrustStore([root.pem])
    assert store.add(first(sub.pem)) == "certificate"
    assert store.add(cert) == "certificate"
    store.authorize_change(device.public_key, "mimika/jila/diloa", 7, ms(NOW))
    store.authorize_change(device.public_key, TPS, 7, ms(NOW))
    with pytest.raises(AuthorizationError, match="outside certificate scope"):
        store.authorize_change(device.public_key, "mimika/jilab", 7, ms(NOW))
    [info] = store.device_info(device.public_key)
    assert info["issuer"] == "PPK Jila"
    assert info["role"] == "pantarlih"
    assert info["status"] == "verified"
    assert info["revoked"] is False


def test_certificate_profile_fields(root: Authority, sub: Authority) -> None:
    device, cert = sub.device(role="gateway", scope=JILA)
    leaf, *_ = parse_blob(cert)
    assert leaf.device_key == device.public_key
    assert (leaf.role, leaf.scope, leaf.is_ca) == ("gateway", JILA, False)
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert f"meshsync:device/{device.device_id}" in uris
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    authority = parse_blob(sub.pem)[0]
    assert authority.is_ca and not authority.is_root and authority.scope == JILA
    bc = authority.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.path_length == 0


def test_scope_with_unusual_characters_round_trips(root: Authority) -> None:
    device, cert = root.device(scope="mimika/kampung uji/tps 1%")
    assert parse_blob(cert)[0].scope == "mimika/kampung uji/tps 1%"
    store = TrustStore([root.pem])
    store.add(cert)
    store.authorize_change(device.public_key, "mimika/kampung uji/tps 1%/x", 1, ms(NOW))


def test_pending_certificate_waits_for_its_sub_authority(root: Authority, sub: Authority) -> None:
    device, cert = sub.device()
    store = TrustStore([root.pem])
    assert store.add(cert) == "certificate"
    assert store.blobs() == []
    assert store.device_info(device.public_key)[0]["status"] == "pending"
    with pytest.raises(AuthorizationError, match="issuer unknown"):
        store.authorize_change(device.public_key, TPS, 1, ms(NOW))
    store.add(sub.pem)  # the chain PEM: sub-authority then root
    store.authorize_change(device.public_key, TPS, 1, ms(NOW))
    assert len(store.blobs()) == 2


def test_expired_and_not_yet_valid(root: Authority) -> None:
    issued = NOW - timedelta(days=400)
    old_root = new_root(now=issued)
    device, cert = old_root.device(now=issued, days=30)
    store = TrustStore([old_root.pem])
    store.add(cert)  # verifiable, even though expired today
    store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(issued))
    with pytest.raises(AuthorizationError, match="expired at"):
        store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(NOW))
    early = issued - NOT_BEFORE_MARGIN - timedelta(seconds=1)
    with pytest.raises(AuthorizationError, match="not valid before"):
        store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(early))


def test_certificate_never_outlives_its_issuer(root: Authority) -> None:
    short_sub = new_sub(root, days=10)
    device, cert = short_sub.device(days=365)
    assert parse_blob(cert)[0].not_after == parse_blob(short_sub.pem)[0].not_after
    store = TrustStore([root.pem])
    store.add(cert + short_sub.pem)
    with pytest.raises(AuthorizationError, match="expired"):
        store.authorize_change(device.public_key, TPS, 1, ms(NOW + timedelta(days=11)))


def test_expired_sub_authority_fails_the_chain(root: Authority) -> None:
    sub_key = generate_authority_key()
    sub_pem = issue_sub_authority(
        root.key, root.pem, sub_key.public_key(), name="PPK Jila", scope=JILA, now=NOW, days=10
    )
    device = DeviceKey.generate()
    # a device certificate that claims to outlive its issuer (hand-built, not clamped)
    cert = hand_built(sub_key, sub_pem, device, scope=TPS, days=365)
    store = TrustStore([root.pem])
    store.add(cert + sub_pem)
    store.authorize_change(device.public_key, TPS, 1, ms(NOW))
    with pytest.raises(AuthorizationError, match="does not verify to a trusted root"):
        store.authorize_change(device.public_key, TPS, 1, ms(NOW + timedelta(days=30)))
    with pytest.raises(AuthorizationError, match="does not verify to a trusted root"):
        store.authorize_change(device.public_key, TPS, 2, ms(NOW + timedelta(days=30)))


def test_sub_authority_cannot_issue_outside_its_scope(sub: Authority) -> None:
    with pytest.raises(UsageError, match="outside"):
        sub.device(scope="mimika/agimuga")
    with pytest.raises(UsageError, match="outside"):
        sub.device(scope="mimika/jilab")
    with pytest.raises(UsageError, match="outside"):
        sub.device(scope="")


def test_sub_authority_cannot_delegate(sub: Authority) -> None:
    with pytest.raises(UsageError, match="only the root"):
        new_sub(sub, scope="mimika/jila/diloa")


def hand_built(
    issuer_key: AuthorityKey, issuer_pem: bytes, device: DeviceKey, scope: str, days: int = 30
) -> bytes:
    """A device certificate made without issue_device_certificate's checks."""
    issuer = parse_blob(issuer_pem)[0].cert
    public = device.private_key.public_key()
    uris = [
        f"meshsync:device/{device.device_id}",
        "meshsync:role/pantarlih",
        f"meshsync:scope/{scope}",
    ]
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rogue")]))
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_out_of_scope_certificate_is_refused_at_verification(
    root: Authority, sub: Authority
) -> None:
    device = DeviceKey.generate()
    rogue = hand_built(sub.key, sub.pem, device, scope="mimika/agimuga")
    store = TrustStore([root.pem])
    with pytest.raises(AuthorizationError, match="outside its scope"):
        store.add(rogue + sub.pem)
    # the same certificate arriving before its issuer: refused when the issuer arrives
    late = TrustStore([root.pem])
    assert late.add(rogue) == "certificate"
    late.add(sub.pem)
    with pytest.raises(AuthorizationError, match="outside its scope"):
        late.authorize_change(device.public_key, "mimika/agimuga", 1, ms(NOW))
    assert late.device_info(device.public_key)[0]["status"] == "rejected"
    assert late.blobs() == [first(sub.pem)]
    chain = [first(rogue), first(sub.pem)]
    with pytest.raises(AuthorizationError, match="outside its scope"):
        late.peer_identity(chain, ms(NOW))


def test_certificate_from_another_authority(root: Authority) -> None:
    other = new_root("KPU Nabire")
    device, cert = other.device()
    store = TrustStore([root.pem])
    with pytest.raises(AuthorizationError, match="not a trusted authority"):
        store.add(cert + other.pem)  # whole chain: its root is not ours
    assert store.add(cert) == "certificate"  # alone: cannot tell yet, kept pending
    with pytest.raises(AuthorizationError, match="trusted root"):
        store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(NOW))
    with pytest.raises(AuthorizationError, match="trusted root"):
        store.peer_identity([first(cert)], ms(NOW))


def test_impostor_authority_with_the_same_name(root: Authority) -> None:
    impostor = new_root("KPU Mimika")
    _device, cert = impostor.device()
    store = TrustStore([root.pem])
    with pytest.raises(AuthorizationError, match="does not verify to a trusted root"):
        store.add(cert)


def test_no_trusted_authority() -> None:
    store = TrustStore([])
    with pytest.raises(AuthorizationError, match="no trusted authority installed"):
        store.authorize_change(b"\x01" * 32, TPS, 1, ms(NOW))
    with pytest.raises(AuthorizationError, match="no trusted authority installed"):
        store.add(new_root().device()[1])


def test_no_certificate_names_the_device(root: Authority) -> None:
    stranger = DeviceKey.generate()
    with pytest.raises(
        AuthorizationError, match=f"device {stranger.device_id[:8]}: no certificate"
    ):
        TrustStore([root.pem]).authorize_change(stranger.public_key, TPS, 1, ms(NOW))


def test_root_must_be_a_self_signed_authority(root: Authority, sub: Authority) -> None:
    with pytest.raises(UsageError):
        TrustStore([first(sub.pem)])
    with pytest.raises(UsageError):
        TrustStore([root.device()[1]])
    with pytest.raises(UsageError):
        TrustStore([b"not a certificate"])


def test_role_table(root: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(ROLE_MAY_WRITE) == set(ROLES)
    assert all(ROLE_MAY_WRITE.values())
    device, cert = root.device(role="central", scope="")
    store = TrustStore([root.pem])
    store.add(cert)
    monkeypatch.setitem(ROLE_MAY_WRITE, "central", False)
    with pytest.raises(AuthorizationError, match="role 'central' may not write"):
        store.authorize_change(device.public_key, TPS, 1, ms(NOW))


def test_renewed_certificate_and_replacement_phone() -> None:
    earlier = NOW - timedelta(days=60)
    root = new_root(now=earlier)
    device, old = root.device(now=earlier, days=30)
    _same, renewed = root.device(key=device)
    replacement, new_phone = root.device()  # same officer name, new key
    store = TrustStore([root.pem])
    for cert in (old, renewed, new_phone):
        store.add(cert)
    store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(NOW))
    store.authorize_change(device.public_key, "mimika/jila/diloa", 1, ms(earlier))
    store.authorize_change(replacement.public_key, "mimika/jila/diloa", 1, ms(NOW))
    assert len(store.device_info(device.public_key)) == 2
    assert store.device_info(replacement.public_key)[0]["name"] == "Officer Contoh"


# -- revocation -----------------------------------------------------------------------------


def test_revocation_after_seq(root: Authority, sub: Authority) -> None:
    device, cert = sub.device()
    store = TrustStore([root.pem])
    store.add(cert + sub.pem)
    revocation = make_revocation(root.key, root.pem, device.public_key, 57, ms(NOW))
    assert store.add(revocation) == "revocation"
    assert store.add(revocation) is None
    assert store.add(armor(revocation)) is None
    assert store.revocation_for(device.public_key) == 57
    store.authorize_change(device.public_key, TPS, 57, ms(NOW))
    with pytest.raises(AuthorizationError, match="revoked after seq 57"):
        store.authorize_change(device.public_key, TPS, 58, ms(NOW))
    assert store.device_info(device.public_key)[0]["revoked_after"] == 57
    with pytest.raises(AuthorizationError, match="revoked"):
        store.peer_identity([first(cert), first(sub.pem)], ms(NOW))
    everything = make_revocation(root.key, root.pem, device.public_key, None, ms(NOW))
    store.add(everything)
    assert store.revocation_for(device.public_key) is None
    with pytest.raises(AuthorizationError, match="all changes"):
        store.authorize_change(device.public_key, TPS, 1, ms(NOW))


def test_revocation_before_the_certificate(root: Authority) -> None:
    device, cert = root.device()
    store = TrustStore([root.pem])
    store.add(make_revocation(root.key, root.pem, device.public_key, 3, ms(NOW)))
    store.add(cert)
    store.authorize_change(device.public_key, "mimika/jila/diloa", 3, ms(NOW))
    with pytest.raises(AuthorizationError, match="revoked after seq 3"):
        store.authorize_change(device.public_key, "mimika/jila/diloa", 4, ms(NOW))


def test_sub_authority_revokes_only_inside_its_scope(root: Authority, sub: Authority) -> None:
    inside, inside_cert = root.device(scope="mimika/jila/diloa")
    outside, outside_cert = root.device(scope="mimika/agimuga")
    store = TrustStore([root.pem])  # the sub-authority certificate travels inside the revocation
    store.add(inside_cert)
    store.add(outside_cert)
    for device in (inside, outside):
        store.add(make_revocation(sub.key, sub.pem, device.public_key, 0, ms(NOW)))
    with pytest.raises(AuthorizationError, match="revoked after seq 0"):
        store.authorize_change(inside.public_key, "mimika/jila/diloa", 1, ms(NOW))
    store.authorize_change(outside.public_key, "mimika/agimuga", 1, ms(NOW))
    assert store.revocation_for(inside.public_key) == 0
    assert store.revocation_for(outside.public_key) is NOT_REVOKED


def test_forged_and_foreign_revocations(root: Authority) -> None:
    device, _cert = root.device()
    store = TrustStore([root.pem])
    good = make_revocation(root.key, root.pem, device.public_key, 5, ms(NOW))
    items = msgpack.unpackb(good)
    items[3] = 500  # change after_seq, keep the signature
    with pytest.raises(AuthorizationError, match="signature does not verify"):
        store.add(msgpack.packb(items))
    other = new_root("KPU Nabire")
    with pytest.raises(AuthorizationError, match="not a trusted authority"):
        store.add(make_revocation(other.key, other.pem, device.public_key, 5, ms(NOW)))
    with pytest.raises(AuthorizationError, match="canonical"):
        store.add(good[:1] + b"\xd9\x13" + good[2:])  # the tag as str8, not fixstr
    assert store.revocation_for(device.public_key) is NOT_REVOKED


def test_revocation_by_an_expired_sub_authority_is_refused(root: Authority, sub: Authority) -> None:
    device, _cert = sub.device()
    late = ms(NOW + timedelta(days=4000))
    with pytest.raises(AuthorizationError, match="revocation of device"):
        TrustStore([root.pem]).add(make_revocation(sub.key, sub.pem, device.public_key, 1, late))


# -- blobs, malformed input, peers ---------------------------------------------------------


def test_blobs_are_canonical_and_forwardable(root: Authority, sub: Authority) -> None:
    devices = [sub.device() for _ in range(3)]
    store = TrustStore([root.pem])
    store.add(sub.pem)
    for _device, cert in devices:
        store.add(cert)
    store.add(make_revocation(sub.key, sub.pem, devices[0][0].public_key, 9, ms(NOW)))
    blobs = store.blobs()
    assert len(blobs) == 5
    assert store.blobs() == blobs
    peer = TrustStore([root.pem])
    for blob in reversed(blobs):  # any order: device certificates wait for the authority
        assert peer.add(blob) in ("certificate", "revocation")
    assert peer.blobs() == blobs
    peer.authorize_change(devices[1][0].public_key, TPS, 1, ms(NOW))


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x82\x01\x00" + b"\x00" * 10,
        b"\x97\x01\x02\x03\x04\x05\x06\x07",
        msgpack.packb(["meshsync/revocation", 2, b"x" * 32, None, 0, b"", b""]),
        b"-----BEGIN MESHSYNC REVOCATION-----\n!!!\n-----END MESHSYNC REVOCATION-----\n",
        b"\x30" * 70_000,
    ],
)
def test_malformed_blobs_are_refused(root: Authority, blob: bytes) -> None:
    with pytest.raises(AuthorizationError):
        TrustStore([root.pem]).add(blob)


ROOT_FOR_FUZZ = new_root()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_only_ever_raises_authorization_error(data: bytes) -> None:
    store = TrustStore([ROOT_FOR_FUZZ.pem])
    for blob in (data, b"\x97" + data, b"\x30\x82" + data, b"-----BEGIN CERTIFICATE-----\n" + data):
        with contextlib.suppress(AuthorizationError):
            store.add(blob)


def test_csr_with_bad_signature_is_refused(root: Authority) -> None:
    csr = load_csr(make_csr(DeviceKey.generate(), "Officer Contoh"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    with pytest.raises(UsageError, match="signature does not verify"):
        issue_device_certificate(
            root.key, root.pem, bytes(der), role="pantarlih", scope=JILA, now=NOW
        )
    with pytest.raises(UsageError, match="malformed"):
        load_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


def test_issue_argument_errors(root: Authority) -> None:
    csr = make_csr(DeviceKey.generate(), "Officer Contoh")
    cases = [
        {"role": "mayor", "scope": JILA, "now": NOW},
        {"role": "pantarlih", "scope": "mimika//jila", "now": NOW},
        {"role": "pantarlih", "scope": JILA, "now": NOW.replace(tzinfo=None)},
        {"role": "pantarlih", "scope": JILA, "now": NOW + timedelta(days=4000)},
    ]
    for kwargs in cases:
        with pytest.raises(UsageError):
            issue_device_certificate(root.key, root.pem, csr, **kwargs)  # type: ignore[arg-type]
    wrong_key = generate_authority_key()
    with pytest.raises(UsageError, match="does not match"):
        issue_device_certificate(wrong_key, root.pem, csr, role="admin", scope="", now=NOW)
    with pytest.raises(UsageError, match="ECDSA"):
        issue_device_certificate(
            Ed25519PrivateKey.generate(),
            root.pem,
            csr,
            role="admin",
            scope="",
            now=NOW,  # type: ignore[arg-type]
        )
    with pytest.raises(UsageError):
        create_authority("", NOW)


def test_peer_identity(root: Authority, sub: Authority) -> None:
    device, cert = sub.device(role="gateway", scope=JILA)
    store = TrustStore([root.pem])  # knows nothing but the root: the peer brings its chain
    chain = [first(cert), first(sub.pem)]
    assert store.peer_identity(chain, ms(NOW)) == (device.public_key, "gateway", JILA)
    with pytest.raises(AuthorizationError):
        store.peer_identity([first(cert)], ms(NOW))
    with pytest.raises(AuthorizationError, match="not a device"):
        store.peer_identity([first(sub.pem)], ms(NOW))
    with pytest.raises(AuthorizationError):
        store.peer_identity(chain, ms(NOW + timedelta(days=400)))
    with pytest.raises(AuthorizationError, match="no certificate"):
        store.peer_identity([], ms(NOW))


def test_authorizing_many_changes_is_cheap(root: Authority, sub: Authority) -> None:
    device, cert = sub.device()
    store = TrustStore([root.pem])
    store.add(cert + sub.pem)
    start = time.perf_counter()
    for seq in range(1, 100_001):
        store.authorize_change(device.public_key, TPS, seq, ms(NOW) + seq)
    assert time.perf_counter() - start < 5.0  # about 0.1 s here; one chain verification


def test_mutual_tls_13_with_issued_certificates(
    tmp_path: Path, root: Authority, sub: Authority
) -> None:
    """The profile works for Python's ssl: both sides verify the other's chain.

    OpenSSL checks validity against the real clock, so these certificates are
    issued now (the root and sub-authority, from NOW, are valid for years).
    """
    today = datetime.now(UTC)
    phone, phone_cert = sub.device(role="pantarlih", now=today)
    laptop, laptop_cert = sub.device(role="gateway", scope=JILA, now=today)
    (tmp_path / "root.crt").write_bytes(root.pem)

    def context(side: str, device: DeviceKey, cert: bytes) -> ssl.SSLContext:
        ctx = ssl.SSLContext(
            ssl.PROTOCOL_TLS_SERVER if side == "server" else ssl.PROTOCOL_TLS_CLIENT
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        (tmp_path / f"{side}.crt").write_bytes(cert + sub.pem)
        (tmp_path / f"{side}.key").write_bytes(device.to_pem())
        ctx.load_cert_chain(tmp_path / f"{side}.crt", tmp_path / f"{side}.key")
        ctx.load_verify_locations(tmp_path / "root.crt")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = context("server", laptop, laptop_cert).wrap_bio(
        server_in, server_out, server_side=True
    )
    client = context("client", phone, phone_cert).wrap_bio(client_in, client_out)
    for _ in range(5):
        for end, out, peer_in in ((client, client_out, server_in), (server, server_out, client_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
            peer_in.write(out.read())
    client.write(b"hello")
    server_in.write(client_out.read())
    assert server.read() == b"hello"
    assert client.version() == "TLSv1.3"
    store = TrustStore([root.pem])
    client_leaf = server.getpeercert(binary_form=True)
    server_leaf = client.getpeercert(binary_form=True)
    assert client_leaf is not None and server_leaf is not None
    sub_der = first(sub.pem)
    identity = store.peer_identity([client_leaf, sub_der], ms(today))
    assert identity[:2] == (phone.public_key, "pantarlih")
    assert store.peer_identity([server_leaf, sub_der], ms(today))[1] == "gateway"


def test_trust_never_reads_the_clock() -> None:
    forbidden_modules = {"time", "trio", "socket", "ssl"}
    package = Path(meshsync.trust.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            assert not names & forbidden_modules, f"{source.name} imports {names}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"now", "utcnow", "today"}, f"{source.name} reads the clock"


def test_device_info_lists_certificates(root: Authority) -> None:
    device, cert = root.device()
    rows = TrustStore([root.pem]).device_info(device.public_key)
    assert rows == []
    store = TrustStore([root.pem])
    store.add(cert)
    assert store.device_info(device.public_key)[0]["device_id"] == device_id(device.public_key)


FUZZ_SUB = new_sub(ROOT_FOR_FUZZ)
FUZZ_CERT = first(FUZZ_SUB.device()[1])
FUZZ_REVOCATION = make_revocation(
    FUZZ_SUB.key, FUZZ_SUB.pem, DeviceKey.generate().public_key, 4, ms(NOW)
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([FUZZ_CERT, FUZZ_REVOCATION]), st.data())
def test_damaged_credentials_only_raise_authorization_error(
    blob: bytes, data: st.DataObject
) -> None:
    """Flip one byte of a valid certificate or revocation: refused cleanly or harmless."""
    at = data.draw(st.integers(0, len(blob) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != blob[at]))
    damaged = blob[:at] + bytes([value]) + blob[at + 1 :]
    store = TrustStore([ROOT_FOR_FUZZ.pem])
    store.add(first(FUZZ_SUB.pem))
    with contextlib.suppress(AuthorizationError):
        store.add(damaged)
    with contextlib.suppress(AuthorizationError):
        store.peer_identity([damaged, first(FUZZ_SUB.pem)], ms(NOW))
