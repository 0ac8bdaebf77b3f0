"""Wire formats of discovery, as pure functions: DNS-SD TXT records and beacon datagrams.

No I/O here. Encoders take a valid :class:`Advert`; decoders take bytes or mappings
that arrived from the network and return a valid :class:`Advert` or raise
:class:`~meshsync.model.errors.DecodeError` (the peer's fault) — never anything
else, whatever the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from meshsync.model.codec import describe_error
from meshsync.model.errors import DecodeError
from meshsync.net.discovery.model import Advert, advert_problem

# -- DNS-SD TXT (RFC 6763 §6) -----------------------------------------------------------

#: TXT keys. RFC 6763 §6.4: keys SHOULD be ≤ 9 characters; case is ignored.
TXT_PROTO, TXT_ID, TXT_MESH, TXT_ROLE, TXT_DIGEST = "proto", "id", "mesh", "role", "vv"


def advert_txt(advert: Advert) -> dict[str, str]:
    """The TXT key/value pairs announcing ``advert`` (the port travels in the SRV record)."""
    return {TXT_PROTO: str(advert.proto), TXT_ID: advert.device_id, TXT_MESH: advert.mesh,
            TXT_ROLE: advert.role, TXT_DIGEST: advert.digest}


def advert_from_txt(properties: Mapping[bytes, bytes | None], port: int) -> Advert:
    """Rebuild a peer's :class:`Advert` from its TXT properties and SRV ``port``.

    Keys are matched case-insensitively (RFC 6763 §6.4) and unknown keys ignored, so a
    newer peer may add keys. Raises :class:`DecodeError` when a key is missing, not
    UTF-8, or out of bounds.
    """
    fields = {key.lower(): value for key, value in properties.items()}

    def text(key: str) -> str:
        value = fields.get(key.encode())
        if value is None:
            raise DecodeError(f"TXT key {key!r} missing or without a value")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"TXT key {key!r} is not UTF-8") from exc

    proto = text(TXT_PROTO)
    if not proto.isascii() or not proto.isdigit():
        raise DecodeError(f"TXT proto is not a number: {proto!r}")
    return _checked(text(TXT_ID), text(TXT_MESH), text(TXT_ROLE), port, int(proto),
                    text(TXT_DIGEST))


def parse_txt_rdata(rdata: bytes) -> dict[bytes, bytes | None]:
    """Split TXT RDATA into key -> value (RFC 6763 §6.1, §6.3, §6.4).

    RDATA is a sequence of length-prefixed strings ``key=value``; a string without
    ``=`` is a boolean attribute (value ``None``); empty strings and empty keys are
    ignored; keys are lower-cased and only a key's first occurrence counts (§6.4).
    Raises :class:`DecodeError` when a length runs past the end.
    """
    out: dict[bytes, bytes | None] = {}
    pos = 0
    while pos < len(rdata):
        end = pos + 1 + rdata[pos]
        if end > len(rdata):
            raise DecodeError("TXT string runs past the end of the record")
        key, sep, value = rdata[pos + 1:end].partition(b"=")
        pos = end
        if key and key.lower() not in out:
            out[key.lower()] = value if sep else None
    return out


# -- UDP beacon ---------------------------------------------------------------------------

#: First bytes of every beacon: "MSB" and the beacon format version.
BEACON_MAGIC = b"MSB\x01"
#: Largest beacon accepted or sent. A valid advert packs to < 250 bytes; 512 fits any
#: link's MTU without fragmentation.
MAX_BEACON_BYTES = 512


def encode_beacon(advert: Advert) -> bytes:
    """The beacon datagram for ``advert``: magic + msgpack ``[proto, mesh, id, role, port,
    digest]`` (positional, ≤ :data:`MAX_BEACON_BYTES`)."""
    body: bytes = msgpack.packb([advert.proto, advert.mesh, advert.device_id, advert.role,
                          advert.port, advert.digest])
    data = BEACON_MAGIC + body
    assert len(data) <= MAX_BEACON_BYTES  # guaranteed by Advert's bounds
    return data


def decode_beacon(data: bytes) -> Advert:
    """Parse a received beacon datagram into the sender's :class:`Advert`.

    Raises :class:`DecodeError` for anything but a well-formed beacon: too large,
    wrong magic, not msgpack, wrong shape or types, or fields out of bounds.
    """
    if len(data) > MAX_BEACON_BYTES:
        raise DecodeError(f"beacon of {len(data)} bytes exceeds {MAX_BEACON_BYTES}")
    if not data.startswith(BEACON_MAGIC):
        raise DecodeError("not a meshsync beacon (bad magic)")
    try:
        fields: Any = msgpack.unpackb(data[len(BEACON_MAGIC):], raw=False,
                                      max_str_len=128, max_bin_len=0, max_array_len=16,
                                      max_map_len=0, max_ext_len=0)
    except ValueError as exc:  # msgpack's errors (ExtraData, FormatError, ...) and bad UTF-8
        raise DecodeError(f"beacon body is not msgpack: {describe_error(exc)}") from exc
    if not isinstance(fields, list) or len(fields) < 6:
        raise DecodeError("beacon body is not a list of 6 fields")
    proto, mesh, device_id, role, port, digest = fields[:6]  # later versions may append
    return _checked(device_id, mesh, role, port, proto, digest)


def _checked(device_id: Any, mesh: Any, role: Any, port: Any, proto: Any,
             digest: Any) -> Advert:
    problem = advert_problem(device_id, mesh, role, port, proto, digest)
    if problem is not None:
        raise DecodeError(problem)
    return Advert(device_id=device_id, mesh=mesh, role=role, port=port, proto=proto,
                  digest=digest)
