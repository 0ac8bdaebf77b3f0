"""Single-shot HPKE, base mode, for one KEM: RFC 9180 with DHKEM(X25519, HKDF-SHA256)
and HKDF-SHA256, AES-GCM as the AEAD (AES-256-GCM for sealed bundles).

Written on the primitives every supported ``cryptography`` release has (X25519,
AES-GCM) and the standard library's HMAC, so a phone whose ``cryptography`` predates
that library's own ``hpke`` module (47) still seals and opens bundles; the output is
the RFC's, byte for byte (tests/test_seal_format.py checks RFC 9180 A.1.1 and, where
the library has it, the library's ``hpke`` both ways). Sections cited are RFC 9180's.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_128_GCM, AEAD_AES_256_GCM = 0x0001, 0x0002
_KEY_BYTES = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32}
ENC_BYTES = 32  # Nenc of DHKEM(X25519): the ephemeral public key
_KEM_SUITE = b"KEM" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")


def _extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869 §2.2; an empty salt is HashLen zeros,
    which HMAC pads to the same key)."""
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869 §2.3)."""
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)  # §4


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def _shared_secret(dh: bytes, enc: bytes, recipient: bytes) -> bytes:
    """DHKEM's ExtractAndExpand over ``enc || pkRm`` (§4.1)."""
    eae_prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)


def _key_schedule(aead: int, shared: bytes, info: bytes) -> tuple[bytes, bytes]:
    """``(key, base_nonce)`` of the base mode's key schedule (§5.1, no PSK)."""
    suite = (b"HPKE" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
             + KDF_HKDF_SHA256.to_bytes(2, "big") + aead.to_bytes(2, "big"))
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared, b"secret", b"")
    return (_labeled_expand(suite, secret, b"key", context, _KEY_BYTES[aead]),
            _labeled_expand(suite, secret, b"base_nonce", context, 12))


def seal(recipient: X25519PublicKey, plaintext: bytes, *, info: bytes = b"",
         aad: bytes = b"", aead: int = AEAD_AES_256_GCM,
         ephemeral: X25519PrivateKey | None = None) -> bytes:
    """``enc || ciphertext`` of ``plaintext`` for ``recipient`` (SealBase, §6.1; the
    first message of the context, sequence 0). ``ephemeral`` is for known-answer
    tests only: by default a fresh one comes from :meth:`X25519PrivateKey.generate`."""
    skE = ephemeral or X25519PrivateKey.generate()
    enc = skE.public_key().public_bytes_raw()
    pkR = recipient.public_bytes_raw()
    key, nonce = _key_schedule(aead, _shared_secret(skE.exchange(recipient), enc, pkR), info)
    return enc + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(private: X25519PrivateKey, sealed: bytes, *, info: bytes = b"",
                aad: bytes = b"", aead: int = AEAD_AES_256_GCM) -> bytes:
    """The plaintext of :func:`seal`'s output for the holder of ``private`` (OpenBase,
    §6.1).

    Raises:
        cryptography.exceptions.InvalidTag: not sealed to this key, or altered.
        ValueError: shorter than an ``enc``, or an ``enc`` that is not a usable
            X25519 key (all-zero shared secret).
    """
    if len(sealed) < ENC_BYTES:
        raise ValueError("sealed data shorter than its encapsulated key")
    enc, ciphertext = sealed[:ENC_BYTES], sealed[ENC_BYTES:]
    dh = private.exchange(X25519PublicKey.from_public_bytes(enc))
    pkR = private.public_key().public_bytes_raw()
    key, nonce = _key_schedule(aead, _shared_secret(dh, enc, pkR), info)
    return AESGCM(key).decrypt(nonce, ciphertext, aad)

