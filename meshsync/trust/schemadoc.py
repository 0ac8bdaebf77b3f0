"""Schema documents: a collection's rules, signed by the root authority, versioned.

A schema document travels as a *credential* (docs/architecture.md §6): it is added
to the trust store (:meth:`meshsync.trust.TrustStore.add`), kept in the store's
credential table, and carried by every sync session and bundle, as revocations are.
Every node validates the collection with the newest version it holds
(:mod:`meshsync.replica.schema` interprets the body).

Encoding (canonical msgpack, ``use_bin_type``, map keys sorted; the blob is the
identity)::

    [ "meshsync/schema",   # type tag
      1,                   # encoding version
      collection,          # str, e.g. "voters"
      version,             # int >= 1, the document's version for this collection
      body,                # map: fields, rules, params (docs/architecture.md §4)
      at_ms,               # int, issued time, ms since the Unix epoch
      issuer_cert,         # bin, DER certificate of the signing authority
      signature ]          # bin, ECDSA P-256 / SHA-256 (DER, RFC 6979 deterministic)

The signature covers the msgpack encoding of the first seven elements. **Signing
rule:** only a trusted *root* authority may publish a schema; a document signed by
a sub-authority is refused by every trust store. A schema holds for every partition
of its collection, so a district sub-authority could otherwise change the rules for
other districts (a narrower, scoped schema would need a merge rule between scopes).

Two different documents with one collection and version (a mistake at the
authority) are both kept; the one with the greater blob wins on every device, so
all devices agree whatever order they learn them in.

A file carries it PEM-armoured (``-----BEGIN MESHSYNC SCHEMA-----``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack

from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.trust import signed
from meshsync.trust.issue import AuthorityKey
from meshsync.trust.profile import MAX_CREDENTIAL_BYTES, CertInfo, iso

SCHEMA_TAG = "meshsync/schema"
SCHEMA_ENCODING = 1
PEM_LABEL = "MESHSYNC SCHEMA"
_PEM_BEGIN, _PEM_END = signed.pem_markers(PEM_LABEL)
_BLOCK = re.compile(re.escape(_PEM_BEGIN) + rb".*?" + re.escape(_PEM_END) + rb"\n?", re.S)
_MAX_INT = 2**63 - 1
_PREFIX = b"\x98" + msgpack.packb(SCHEMA_TAG)


@dataclass(frozen=True)
class SchemaDoc:
    """A decoded schema document whose signature matches its embedded issuer.

    ``body``: the declarative rules (a dict, see :mod:`meshsync.replica.schema`);
    ``at_ms``: when it was signed (ms since the epoch); ``issuer``: the signing
    authority's certificate (its trust is checked by the trust store).
    """

    collection: str
    version: int
    body: dict[str, Any]
    at_ms: int
    issuer: CertInfo
    blob: bytes

    def to_json(self) -> dict[str, Any]:
        """``{"collection", "version", "issuer", "signed"}`` (signed: ISO 8601 UTC)."""
        return {"collection": self.collection, "version": self.version,
                "issuer": self.issuer.name, "signed": iso(self.at_ms // 1000)}


def _sorted(value: Any) -> Any:
    """``value`` with every map's keys in sorted order (the canonical form)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _pack(items: list[Any]) -> bytes:
    return msgpack.packb(_sorted(items), use_bin_type=True)  # type: ignore[no-any-return]


def _unsigned(collection: str, version: int, body: dict[str, Any], at_ms: int,
              issuer_der: bytes) -> list[Any]:
    return [SCHEMA_TAG, SCHEMA_ENCODING, collection, version, body, at_ms, issuer_der]


def make_schema(issuer_key: AuthorityKey, issuer_cert_pem: bytes, collection: str,
                version: int, body: dict[str, Any], at_ms: int) -> bytes:
    """Sign schema document ``version`` (1 or more) of ``collection``; returns the blob.

    ``issuer_cert_pem``: the root authority's certificate (first PEM block);
    ``body``: the rules (string keys, msgpack-encodable values); ``at_ms``: issued
    time, ms since the epoch. Raises :class:`UsageError` if the key does not match
    a root authority certificate or an argument is out of range.
    """
    if not isinstance(collection, str) or not collection:
        raise UsageError("a schema document needs a collection name")
    if not 1 <= version <= _MAX_INT or not 0 <= at_ms <= _MAX_INT:
        raise UsageError(f"schema version must be 1 to {_MAX_INT}, got {version}")
    issuer = signed.signing_authority(
        issuer_key, issuer_cert_pem, root_only=True,
        refusal="only the root authority signs schema documents; this key does not match "
                "a root authority certificate")
    return signed.sign_record(issuer_key, _unsigned(collection, version, body, at_ms,
                                                    issuer.der), _pack)


def _fields(blob: bytes) -> list[Any]:
    """Unpack and shape-check the eight fields; AuthorizationError if malformed."""
    items = signed.unpack_record(blob, "schema document")
    shape_ok = (isinstance(items, list) and len(items) == 8 and items[0] == SCHEMA_TAG
                and isinstance(items[2], str) and isinstance(items[3], int)
                and items[3] >= 1 and isinstance(items[4], dict)
                and isinstance(items[5], int) and items[5] >= 0
                and isinstance(items[6], bytes) and isinstance(items[7], bytes))
    if not shape_ok:
        raise AuthorizationError("malformed schema document: not a meshsync schema record")
    if items[1] != SCHEMA_ENCODING:
        raise AuthorizationError(f"unsupported schema document encoding {items[1]!r}")
    if _pack(items) != blob:
        raise AuthorizationError("malformed schema document: not in canonical encoding")
    return list(items)


def decode_schema(blob: bytes) -> SchemaDoc:
    """Decode a schema document (raw or PEM-armoured) and check its signature.

    Checks that the embedded issuer is an authority whose key signed it; does *not*
    check that the issuer is a trusted root (the trust store does). Raises
    :class:`AuthorizationError` if malformed or the signature does not verify.
    """
    if len(blob) > MAX_CREDENTIAL_BYTES:
        raise AuthorizationError(f"credential larger than {MAX_CREDENTIAL_BYTES} bytes")
    blob = unarmor(blob)
    _tag, _enc, collection, version, body, at_ms, issuer_der, signature = _fields(blob)
    issuer = signed.check_signed(
        issuer_der, signature, _pack(_unsigned(collection, version, body, at_ms, issuer_der)),
        what="schema document",
        failure=f"schema document {collection} v{version}: signature does not verify")
    return SchemaDoc(collection, version, body, at_ms, issuer, blob)


def is_schema(blob: bytes) -> bool:
    """True if ``blob`` looks like a schema document (armoured, or tagged msgpack)."""
    return blob.lstrip().startswith(_PEM_BEGIN) or blob.startswith(_PREFIX)


def armor(blob: bytes) -> bytes:
    """PEM-armour a schema document for a file."""
    return signed.armor(blob, PEM_LABEL)


def unarmor(blob: bytes) -> bytes:
    """The raw blob inside PEM armour (or ``blob`` itself if not armoured)."""
    return signed.unarmor(blob, PEM_LABEL, "schema document")


def split_schemas(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split a credential file into (the rest, raw schema document blobs).

    The documents are not verified here: add them to a trust store. Raises
    :class:`AuthorizationError` if an armoured block is not base64.
    """
    return _BLOCK.sub(b"", data), [unarmor(m.group(0)) for m in _BLOCK.finditer(data)]


class SchemaBook:
    """The schema documents one device holds, by collection and version.

    Only verified documents go in (the trust store checks the issuer first).
    """

    def __init__(self) -> None:
        self._docs: dict[str, dict[bytes, SchemaDoc]] = {}

    def add(self, doc: SchemaDoc) -> bool:
        """Keep ``doc``; True if it was new."""
        held = self._docs.setdefault(doc.collection, {})
        if doc.blob in held:
            return False
        held[doc.blob] = doc
        return True

    def versions(self, collection: str) -> list[SchemaDoc]:
        """The documents of ``collection``, oldest first (newest last; ties of one
        version ordered by blob, the greater one counting as newer)."""
        docs = self._docs.get(collection, {}).values()
        return sorted(docs, key=lambda d: (d.version, d.blob))

    def newest(self, collection: str) -> SchemaDoc | None:
        """The document every edit of ``collection`` is judged by, or None."""
        docs = self.versions(collection)
        return docs[-1] if docs else None

    def collections(self) -> list[str]:
        """Collections with at least one document, sorted."""
        return sorted(self._docs)

    def blobs(self) -> list[bytes]:
        """Every document's blob, sorted by bytes."""
        return sorted(blob for docs in self._docs.values() for blob in docs)
