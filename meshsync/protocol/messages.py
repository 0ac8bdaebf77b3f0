"""The session's wire messages as typed values, decoded from frames in one place.

Every message of the protocol (docs/protocol.md; the list is in
:mod:`meshsync.protocol.session`) is a frozen dataclass that checks its own fields
when it is built. :func:`decode` turns the msgpack array of one frame
(:class:`meshsync.protocol.frames.FrameReader`) into one of them, so the state machine
never sees a raw list. Each message's :meth:`to_wire` gives back the array it was read
from, so what goes on the wire is exactly what was read.

What a message cannot check alone (a batch number against the frames received so far,
a version vector against the shared scope, a compact receipt against the base) is
checked by the session, which knows the state.

Anything malformed raises :class:`SessionError`, the one error the session raises for
what the peer sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from meshsync.model.errors import RemoteError
from meshsync.model.identity import PUBLIC_KEY_BYTES
from meshsync.model.text import Msg
from meshsync.protocol import frames as fr
from meshsync.protocol.zdict import MAX_OFFERED

DIGEST_BYTES = 16
MAX_WALL_MS = (1 << 48) - 1  # the HLC's wall-clock field (meshsync.model.hlc)


class SessionError(RemoteError):
    """The peer broke the protocol or sent bad data; the session is over."""

    stage = "protocol"


def _digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_BYTES


def version_refusal(proto: object) -> Msg:
    """Why a HELLO of protocol version ``proto`` is refused: the older side must upgrade
    meshsync. Worded for both ends (it also travels to the peer in an ERROR)."""
    ours = fr.PROTOCOL_VERSION
    if type(proto) is int and proto != ours:
        old, new = min(proto, ours), max(proto, ours)
        return Msg("meshsync protocol version %(old)d cannot sync with version %(new)d: "
                   "upgrade meshsync on the device that speaks version %(old)d",
                   old=old, new=new)
    return Msg("the peer's hello names no protocol version (%(proto)s); this device "
               "speaks version %(ours)d: upgrade meshsync on the peer",
               proto=repr(proto)[:40], ours=ours)


def _dictionary_ids(value: object) -> bool:
    return type(value) is list and len(value) <= MAX_OFFERED \
        and all(type(i) is int and 0 < i < 256 for i in value)


@dataclass(frozen=True)
class Hello:
    """HELLO: who the peer is. ``clock_ms`` is its wall clock in ms when it started;
    ``zlib`` the preset dictionary ids it knows (:mod:`meshsync.protocol.zdict`; empty:
    it compresses nothing)."""

    kind: ClassVar[int] = fr.HELLO
    proto: int
    mesh: str
    device: bytes
    role: str
    scope: str
    clock_ms: int
    zlib: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.proto != fr.PROTOCOL_VERSION:
            raise SessionError(version_refusal(self.proto), stage="version")
        if not isinstance(self.device, bytes) or len(self.device) != PUBLIC_KEY_BYTES \
                or type(self.mesh) is not str or type(self.role) is not str \
                or type(self.scope) is not str or type(self.clock_ms) is not int \
                or not 0 <= self.clock_ms <= MAX_WALL_MS \
                or not _dictionary_ids(list(self.zlib)):
            raise SessionError("malformed hello fields")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Hello:
        """``[HELLO, {proto, mesh, device, role, scope, clock_ms, zlib}]``."""
        body = raw[1] if len(raw) == 2 and type(raw[1]) is dict else None
        if body is None:
            raise SessionError("malformed hello")
        if body.get("proto") != fr.PROTOCOL_VERSION:  # before the fields: they may differ
            raise SessionError(version_refusal(body.get("proto")), stage="version")
        fields: list[Any] = [body.get(k) for k in ("proto", "mesh", "device", "role",
                                                   "scope", "clock_ms")]
        offered: Any = body.get("zlib")
        if not _dictionary_ids(offered):
            raise SessionError("malformed hello fields")
        fields.append(tuple(offered))
        return cls(*fields)

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.HELLO, {"proto": self.proto, "mesh": self.mesh, "device": self.device,
                           "role": self.role, "scope": self.scope, "clock_ms": self.clock_ms,
                           "zlib": list(self.zlib)}]


@dataclass(frozen=True)
class Summary:
    """SUMMARY: digests of feeds, credentials and receipts (16 B each) and the skew in
    ms the sender measured from our HELLO (our clock minus its, as it saw it)."""

    kind: ClassVar[int] = fr.SUMMARY
    digests: tuple[bytes, bytes, bytes]
    skew_ms: int

    def __post_init__(self) -> None:
        if type(self.digests) is not tuple or len(self.digests) != 3 \
                or not all(_digest(d) for d in self.digests) or type(self.skew_ms) is not int:
            raise SessionError("malformed summary")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Summary:
        """``[SUMMARY, [feeds, credentials, receipts], skew_ms]``."""
        if len(raw) != 3 or type(raw[1]) is not list:
            raise SessionError("malformed summary")
        digests: Any = tuple(raw[1])  # checked on init
        return cls(digests, raw[2])

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.SUMMARY, list(self.digests), self.skew_ms]


@dataclass(frozen=True)
class VersionVectors:
    """VV: the compact version vector, credential digests and receipt digests, each
    None where the SUMMARY digests were equal. Their contents are read against the
    shared scope by :mod:`meshsync.protocol.meta`."""

    kind: ClassVar[int] = fr.VV
    vv: list[Any] | None
    credentials: list[Any] | None
    receipts: list[Any] | None

    def __post_init__(self) -> None:
        if not all(p is None or type(p) is list for p in self.parts):
            raise SessionError("malformed version vector")

    @property
    def parts(self) -> tuple[list[Any] | None, list[Any] | None, list[Any] | None]:
        """``(vv, credentials, receipts)``."""
        return (self.vv, self.credentials, self.receipts)

    @classmethod
    def from_wire(cls, raw: list[Any]) -> VersionVectors:
        """``[VV, vv | nil, credential digests | nil, receipt digests | nil]``."""
        if len(raw) != 4:
            raise SessionError("malformed version vector")
        return cls(raw[1], raw[2], raw[3])

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.VV, self.vv, self.credentials, self.receipts]


@dataclass(frozen=True)
class Credentials:
    """CRED: certificate and revocation blobs the peer lacks."""

    kind: ClassVar[int] = fr.CRED
    blobs: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if type(self.blobs) is not tuple or not all(isinstance(b, bytes) for b in self.blobs):
            raise SessionError("malformed credentials")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Credentials:
        """``[CRED, [blob, ...]]``."""
        if len(raw) != 2 or type(raw[1]) is not list:
            raise SessionError("malformed credentials")
        return cls(tuple(raw[1]))

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.CRED, list(self.blobs)]


@dataclass(frozen=True)
class Receipts:
    """RCPT: receipt blobs the peer relays, or the compact receipt it issued at the end
    of the session (``[at_ms, delta, sig]``, see :mod:`meshsync.protocol.meta`)."""

    kind: ClassVar[int] = fr.RCPT
    items: tuple[Any, ...]

    def __post_init__(self) -> None:
        if type(self.items) is not tuple:
            raise SessionError("malformed receipts")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Receipts:
        """``[RCPT, [blob | compact receipt, ...]]``."""
        if len(raw) != 2 or type(raw[1]) is not list:
            raise SessionError("malformed receipts")
        return cls(tuple(raw[1]))

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.RCPT, list(self.items)]


@dataclass(frozen=True)
class Changes:
    """CHANGES: frame number ``batch`` (from 1) of change stream items
    (:mod:`meshsync.protocol.stream`; decoded by the session, whose decoder keeps the
    stream's state). Sent pre-packed by :func:`meshsync.protocol.stream.changes_frame`."""

    kind: ClassVar[int] = fr.CHANGES
    batch: int
    items: list[Any]

    def __post_init__(self) -> None:
        if type(self.batch) is not int or type(self.items) is not list:
            raise SessionError("malformed or out-of-order changes frame")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Changes:
        """``[CHANGES, batch, [item, ...]]``."""
        if len(raw) != 3:
            raise SessionError("malformed or out-of-order changes frame")
        return cls(raw[1], raw[2])

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.CHANGES, self.batch, self.items]


@dataclass(frozen=True)
class Ack:
    """ACK: frame ``batch`` is committed; ``resend`` names VV entries (indexes) whose
    feeds the sender must send again in full (a fork, :mod:`meshsync.protocol.stream`)."""

    kind: ClassVar[int] = fr.ACK
    batch: int
    resend: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if type(self.batch) is not int:
            raise SessionError("unexpected ack")
        if type(self.resend) is not tuple:
            raise SessionError("malformed ack or feeds asked for after sent-all")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Ack:
        """``[ACK, batch]`` or ``[ACK, batch, [index, ...]]`` (a non-empty list)."""
        if len(raw) not in (2, 3):
            raise SessionError("unexpected ack")
        if len(raw) == 3 and (type(raw[2]) is not list or not raw[2]):
            raise SessionError("malformed ack or feeds asked for after sent-all")
        return cls(raw[1], tuple(raw[2]) if len(raw) == 3 else ())

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.ACK, self.batch, *([list(self.resend)] if self.resend else [])]


@dataclass(frozen=True)
class SentAll:
    """SENT_ALL: the sender has sent all its changes, in ``count`` CHANGES frames."""

    kind: ClassVar[int] = fr.SENT_ALL
    count: int

    def __post_init__(self) -> None:
        if type(self.count) is not int:
            raise SessionError("sent-all count does not match the frames received")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> SentAll:
        """``[SENT_ALL, count]``."""
        if len(raw) != 2:
            raise SessionError("sent-all count does not match the frames received")
        return cls(raw[1])

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.SENT_ALL, self.count]


@dataclass(frozen=True)
class Fin:
    """FIN: digest of the feeds and credentials the sender holds at its end."""

    kind: ClassVar[int] = fr.FIN
    digest: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes):
            raise SessionError("malformed fin")

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Fin:
        """``[FIN, digest]``."""
        if len(raw) != 2:
            raise SessionError("malformed fin")
        return cls(raw[1])

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        return [fr.FIN, self.digest]


@dataclass(frozen=True)
class Error:
    """ERROR: the sender ends the session; ``stage`` and ``reason`` say why. Read
    leniently (whatever the peer wrote becomes text): it ends the session anyway.

    ``credentials``: with an ``identity`` refusal of a revoked device, the revocations
    that refuse it, so the device learns its own revocation (docs/protocol.md,
    "Errors"); at most :data:`MAX_ERROR_CREDENTIALS` blobs, each a bytes value of at
    most 64 KiB, anything else ignored. A peer that does not know the field ignores it.
    """

    kind: ClassVar[int] = fr.ERROR
    stage: str
    reason: str
    credentials: tuple[bytes, ...] = ()

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Error:
        """``[ERROR, stage, reason]`` or ``[ERROR, stage, reason, [blob, ...]]`` (missing
        parts get a placeholder)."""
        extra = raw[3] if len(raw) > 3 and type(raw[3]) is list else []
        blobs = tuple(b for b in extra[:MAX_ERROR_CREDENTIALS]
                      if isinstance(b, bytes) and len(b) <= 64 * 1024)
        return cls(str(raw[1]) if len(raw) > 1 else "unknown",
                   str(raw[2]) if len(raw) > 2 else "no reason given", blobs)

    def to_wire(self) -> list[Any]:
        """The msgpack array of this message."""
        if self.credentials:
            return [fr.ERROR, self.stage, self.reason, list(self.credentials)]
        return [fr.ERROR, self.stage, self.reason]


#: Credentials an ERROR may carry (a device's revocations: one per issuer, in practice).
MAX_ERROR_CREDENTIALS = 16


Message = (Hello | Summary | VersionVectors | Credentials | Receipts | Changes | Ack
           | SentAll | Fin | Error)

_BY_KIND: dict[int, Any] = {cls.kind: cls for cls in (
    Hello, Summary, VersionVectors, Credentials, Receipts, Changes, Ack, SentAll, Fin,
    Error)}


def decode(raw: list[Any]) -> Message:
    """The message of one frame's array (its first element a known message type, as
    :class:`~meshsync.protocol.frames.FrameReader` checks); :class:`SessionError` if
    malformed."""
    cls = _BY_KIND.get(raw[0]) if raw and type(raw[0]) is int else None
    if cls is None:
        raise SessionError("frame is not a meshsync message")
    message: Message = cls.from_wire(raw)
    return message


def name(kind: type[Message]) -> str:
    """The message type's name as errors and the state diagram show it (``"sent-all"``)."""
    return fr.NAMES[kind.kind]


def encode(message: Message) -> bytes:
    """The length-prefixed frame of ``message``."""
    return fr.encode_frame(message.to_wire())
