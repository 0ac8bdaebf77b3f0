"""The sealed bundle format (meshsync.protocol.seal) byte by byte, in process.

The end-to-end behaviour (who may open a district's bundle, the wipe) is in
tests/test_sealed_bundles.py with the real command; here the format's own promises:
the derived X25519 key matches the Ed25519 key, many chunks round-trip, and a removed
recipient, a swapped, dropped or appended chunk, or another device's key is refused.
"""

from __future__ import annotations

import hashlib
import io
import random

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from helpers import device_key

from meshsync.model.errors import DecodeError, SealedError
from meshsync.model.identity import DeviceKey
from meshsync.model.sealkeys import x25519_private, x25519_public
from meshsync.protocol.seal import (
    CHUNK_ITEM,
    PLAIN_CHUNK,
    SEAL,
    SEALED_MAGIC,
    SealingWriter,
    content_key_for,
    plaintext_chunks,
    read_seal_header,
)

ALICE, BOB, EVE = device_key("alice"), device_key("bob"), device_key("eve")
PLAIN = random.Random(17).randbytes(3 * PLAIN_CHUNK + 1234)


def seal(plain: bytes = PLAIN, to: tuple[DeviceKey, ...] = (ALICE, BOB)) -> bytes:
    out = io.BytesIO()
    w = SealingWriter(out, [k.public_key for k in to], created_ms=1, creator=ALICE.public_key,
                      revocations=[b"not checked here"])
    for i in range(0, len(plain), 5000):
        w.write(plain[i:i + 5000])
    w.close()
    return out.getvalue()


def open_as(data: bytes, key: DeviceKey) -> bytes:
    f = io.BytesIO(data)
    header = read_seal_header(f, len(data), 1 << 20)
    content_key = content_key_for(header, key, enrolled=True)
    return b"".join(plaintext_chunks(f, header, content_key, len(data), 1 << 20))


def pieces(data: bytes) -> tuple[list[object], list[bytes]]:
    """(header item, chunk ciphertexts) of a sealed file."""
    items = list(msgpack.Unpacker(io.BytesIO(data[len(SEALED_MAGIC):-37]), raw=False))
    return items[0], [c for _, c in items[1:]]


def rebuild(header: object, chunks: list[bytes]) -> bytes:
    body = SEALED_MAGIC + msgpack.packb(header, use_bin_type=True) + b"".join(
        msgpack.packb([CHUNK_ITEM, c], use_bin_type=True) for c in chunks)
    return body + b"MSEND" + hashlib.sha256(body).digest()


def test_the_derived_x25519_key_pairs_with_the_ed25519_key() -> None:
    for n in range(20):
        key = device_key(f"d{n}")
        assert x25519_private(key.seed()).public_key().public_bytes_raw() == \
            x25519_public(key.public_key).public_bytes_raw()


def test_every_recipient_opens_many_chunks_and_a_stranger_does_not() -> None:
    data = seal()
    assert len(pieces(data)[1]) == 4 and PLAIN[:64] not in data
    assert open_as(data, ALICE) == PLAIN and open_as(data, BOB) == PLAIN
    with pytest.raises(SealedError, match="is not one of them"):
        open_as(data, EVE)
    with pytest.raises(SealedError, match="not enrolled"):
        f = io.BytesIO(data)
        content_key_for(read_seal_header(f, len(data), 1 << 20), ALICE, enrolled=False)


def test_an_empty_plaintext_is_one_last_chunk() -> None:
    assert open_as(seal(b""), BOB) == b""


@pytest.mark.parametrize("change", ["swap", "drop last", "append", "drop recipient"])
def test_a_rearranged_sealed_file_is_refused(change: str) -> None:
    header, chunks = pieces(seal())
    if change == "swap":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif change == "drop last":
        chunks.pop()
    elif change == "append":
        chunks.append(chunks[0])
    else:  # a forger removes Bob: Alice's chunks no longer authenticate
        assert isinstance(header, list) and header[0] == SEAL
        header[1]["recipients"] = [r for r in header[1]["recipients"]
                                   if r[0] == ALICE.public_key]
    with pytest.raises((SealedError, DecodeError)):
        open_as(rebuild(header, chunks), ALICE)


# -- HPKE (meshsync/protocol/hpke.py) ----------------------------------------------------

def test_hpke_matches_rfc_9180_a_1_1() -> None:
    """RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM,
    base mode, the first encryption (sequence 0)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    from meshsync.protocol import hpke

    h = bytes.fromhex
    info = h("4f6465206f6e2061204772656369616e2055726e")
    sk_e = X25519PrivateKey.from_private_bytes(
        h("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"))
    pk_r = X25519PublicKey.from_public_bytes(
        h("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"))
    sk_r = X25519PrivateKey.from_private_bytes(
        h("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"))
    pt, aad = h("4265617574792069732074727574682c20747275746820626561757479"), h("436f756e742d30")
    expected = (h("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")  # enc
                + h("f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
                    "6d8770ac83d07bea87e13c512a"))
    sealed = hpke.seal(pk_r, pt, info=info, aad=aad, aead=hpke.AEAD_AES_128_GCM,
                       ephemeral=sk_e)
    assert sealed == expected
    assert hpke.open_sealed(sk_r, sealed, info=info, aad=aad,
                            aead=hpke.AEAD_AES_128_GCM) == pt


def test_hpke_agrees_with_the_cryptography_librarys_own_where_it_has_one() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from meshsync.protocol import hpke

    theirs = pytest.importorskip("cryptography.hazmat.primitives.hpke",
                                 reason="cryptography < 47 has no hpke module")
    suite = theirs.Suite(theirs.KEM.X25519, theirs.KDF.HKDF_SHA256,
                         theirs.AEAD.AES_256_GCM)
    key = X25519PrivateKey.generate()
    info, secret = b"meshsync test\x00", bytes(range(32))
    assert suite.decrypt(hpke.seal(key.public_key(), secret, info=info), key,
                         info=info) == secret
    assert hpke.open_sealed(key, suite.encrypt(secret, key.public_key(), info=info),
                            info=info) == secret
    with pytest.raises(InvalidTag):
        hpke.open_sealed(X25519PrivateKey.generate(), hpke.seal(key.public_key(), secret))
