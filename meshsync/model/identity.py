"""Device identity: Ed25519 key pairs, device ids, signatures.

A device is one installation with its own Ed25519 key pair (RFC 8032). Its
*device id* is the raw 32-byte public key written in lower-case base32 without
padding (52 characters), so the id itself is the key and needs no lookup.

``cryptography`` (and ``hashlib``, which loads OpenSSL) is imported when a key is made,
loaded or used (or a hash taken), not with this module: device ids and the key-file
check (:func:`check_key_pem`) serve the read commands (``meshsync get``) without them
(tests/test_cli_start.py).
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import TYPE_CHECKING

from meshsync.model.errors import DecodeError, SignatureError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

#: DER of an Ed25519 PKCS#8 private key (RFC 8410 §7) before its 32-byte seed: a home's
#: key file is this, so it is read without ``cryptography``'s serialization module
#: (which alone takes longer to import than ``meshsync get`` takes to run).
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def device_id(public_key: bytes) -> str:
    """Return the printable device id of a raw 32-byte Ed25519 public key."""
    return base64.b32encode(public_key).decode("ascii").rstrip("=").lower()


def parse_device_id(text: str) -> bytes:
    """Parse a device id (as printed by :func:`device_id`) back to its 32-byte key.

    Raises :class:`~meshsync.model.errors.UsageError` if ``text`` is not a device id.
    """
    clean = text.strip().upper()
    try:
        raw = base64.b32decode(clean + "=" * (-len(clean) % 8))
    except ValueError as exc:  # binascii.Error is a ValueError
        raise UsageError(f"not a device id: {text!r}") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise UsageError(f"not a device id (wrong length): {text!r}")
    return raw


def short_id(public_key: bytes) -> str:
    """First 8 characters of the device id: enough for logs and tables."""
    return device_id(public_key)[:8]


class DeviceKey:
    """An Ed25519 private key and its public half.

    Construct with :meth:`generate` or :meth:`from_pem`; :meth:`to_pem` gives the
    unencrypted PKCS#8 PEM the node home stores with file mode 0600.
    """

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> DeviceKey:
        """Create a new random key pair."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> DeviceKey:
        """Load a PKCS#8 PEM private key; raises UsageError if it is not Ed25519."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        seed = _pkcs8_seed(data)
        if seed is not None:
            return cls(Ed25519PrivateKey.from_private_bytes(seed))
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"cannot read device key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError("device key is not an Ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        """Serialise as unencrypted PKCS#8 PEM."""
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The ``cryptography`` private key object (for X.509 and TLS)."""
        return self._private

    @property
    def device_id(self) -> str:
        """This key's printable device id."""
        return device_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def seed(self) -> bytes:
        """The 32-byte private seed (for :func:`meshsync.model.sealkeys.x25519_private`)."""
        return self._private.private_bytes_raw()


def check_key_pem(data: bytes) -> None:
    """Refuse ``data`` exactly as :meth:`DeviceKey.from_pem` would (UsageError), without
    keeping the key: a key file as :meth:`DeviceKey.to_pem` writes it is checked in
    pure Python, any other form by loading it with ``cryptography``."""
    if _pkcs8_seed(data) is None:
        DeviceKey.from_pem(data)


def _pkcs8_seed(data: bytes) -> bytes | None:
    """The 32-byte seed of ``data`` if it is one unencrypted Ed25519 PKCS#8 PEM block
    (what :meth:`DeviceKey.to_pem` writes), else None (then ``cryptography`` reads it)."""
    body = data.strip()
    if not (body.startswith(_PEM_BEGIN) and body.endswith(_PEM_END)):
        return None
    try:
        der = base64.b64decode(body[len(_PEM_BEGIN):-len(_PEM_END)], validate=False)
    except ValueError:
        return None
    if len(der) != len(_PKCS8_ED25519_PREFIX) + 32 or not der.startswith(_PKCS8_ED25519_PREFIX):
        return None
    return der[len(_PKCS8_ED25519_PREFIX):]


@lru_cache(maxsize=4096)
def _public(public_key: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise DecodeError(f"invalid Ed25519 public key {public_key.hex()}") from exc


def verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    """Check an Ed25519 signature; raises :class:`SignatureError` if it does not verify."""
    from cryptography.exceptions import InvalidSignature

    try:
        _public(public_key).verify(signature, data)
    except InvalidSignature as exc:
        raise SignatureError(
            f"signature by {short_id(public_key)} does not verify"
        ) from exc


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes) of ``data``."""
    import hashlib  # loads OpenSSL (~3 ms): not at start-up, as a read hashes nothing

    return hashlib.sha256(data).digest()
