"""Each device's X25519 key for sealed bundles, derived from its Ed25519 device key.

A sealed bundle (docs/protocol.md, "Sealed bundles") is encrypted to devices by HPKE
(RFC 9180) with the DHKEM(X25519) KEM. Every device already has one key pair, the
Ed25519 key its certificate carries and that signs its changes; its X25519 key is the
birational image of that key (the Edwards point's Montgomery u-coordinate, and for
the private half the clamped first 32 bytes of SHA-512 of the Ed25519 seed: the same
scalar Ed25519 signs with), as libsodium's ``crypto_sign_ed25519_pk_to_curve25519``
and age's ``ssh-ed25519`` recipients do. So every certificate an authority ever
signed names its device's encryption key, and a key rotation or a restored home
(docs/operations.md) changes both together (docs/architecture.md §6, "Sealed
bundles", for the choice and its trade-off).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from meshsync.model.errors import UsageError

_P = 2**255 - 19


def x25519_public(ed25519_public: bytes) -> X25519PublicKey:
    """The X25519 public key of a raw 32-byte Ed25519 public key.

    Raises :class:`UsageError` if ``ed25519_public`` is not 32 bytes or is a point
    with no Montgomery image (y = 1: the identity, never a real device key).
    """
    if len(ed25519_public) != 32:
        raise UsageError("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    if y >= _P or (1 - y) % _P == 0:
        raise UsageError("not an Ed25519 public key usable for encryption")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))


def x25519_private(ed25519_seed: bytes) -> X25519PrivateKey:
    """The X25519 private key of a 32-byte Ed25519 private seed (its public half is
    :func:`x25519_public` of the Ed25519 public key)."""
    if len(ed25519_seed) != 32:
        raise UsageError("an Ed25519 seed is 32 bytes")
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(ed25519_seed).digest()[:32])


__all__ = ["x25519_private", "x25519_public"]
