"""Credentials (certificates, revocations, schema documents) as PEM text and back.

``meshsync authority revoke``, ``rotate``, ``install`` and ``schema publish`` send the
credentials they make to a running daemon as one PEM text (``POST /api/credentials``):
:func:`credentials_pem` writes it, :func:`credential_blobs` reads it. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import re

from meshsync.model.errors import UsageError
from meshsync.trust import revocation, schemadoc

CERTIFICATE_LABEL = "CERTIFICATE"
#: The PEM labels a credential text may hold.
LABELS = (CERTIFICATE_LABEL, revocation.PEM_LABEL, schemadoc.PEM_LABEL)
_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.DOTALL)


def _label(blob: bytes) -> str:
    if revocation.is_revocation(blob):
        return revocation.PEM_LABEL
    if schemadoc.is_schema(blob):
        return schemadoc.PEM_LABEL
    return CERTIFICATE_LABEL  # DER; the receiver's trust store checks it


def credential_pem(blob: bytes) -> bytes:
    """``blob`` (a DER certificate, a revocation or a schema document) as one PEM block."""
    text = base64.encodebytes(blob).replace(b"\n", b"")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    label = _label(blob).encode()
    return b"\n".join([b"-----BEGIN " + label + b"-----", *lines,
                       b"-----END " + label + b"-----"]) + b"\n"


def credentials_pem(blobs: list[bytes]) -> bytes:
    """Every blob of ``blobs`` as PEM blocks, in order."""
    return b"".join(credential_pem(blob) for blob in blobs)


def credential_blobs(text: bytes, name: str = "the credential text") -> list[bytes]:
    """The blobs of the PEM blocks in ``text``; UsageError naming ``name`` if it holds
    none, a block of another kind than :data:`LABELS`, or one that is not base64."""
    blobs = []
    for match in _BLOCK.finditer(text):
        label = match.group(1).decode()
        if label not in LABELS:
            raise UsageError(f"{name}: a {label} block is not a credential (expected "
                             f"{', '.join(LABELS)})")
        try:
            blobs.append(base64.b64decode(b"".join(match.group(2).split()), validate=True))
        except binascii.Error as exc:
            raise UsageError(f"{name}: a {label} block is not valid base64: {exc}") from exc
    if not blobs:
        raise UsageError(f"{name} holds no PEM credential (certificate, revocation or "
                         "schema document)")
    return blobs
