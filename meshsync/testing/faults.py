"""The fake network and its faults: frame-aware byte pipes, two sessions joined by them,
and the simulator's fault injector.

Used by the district simulator (:mod:`meshsync.testing.sim`) and by the session tests
(a pair of endpoints is the default protocol test, as in h11's tests). Every fault acts on a
:class:`Pipe`, the one routing hook (as trio's fake net): a cut (bytes in flight are lost), a
duplicated frame, a dropped frame, a link that silently stops carrying anything.
:class:`FaultInjector` draws them, plus crashes, partitions and clock jumps, from the
simulation's one random stream.

A pipe models one direction of an ordered byte stream (TCP under TLS). A session only
ever queues whole frames, so the pipe keeps them as frames and faults can act on frame
boundaries, while delivery still happens in pieces of any size (a reset can land in the
middle of a frame). Nothing here reads a clock: each end's time comes from the clock
function it was given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshsync.protocol.events import Event
from meshsync.protocol.frames import COMPRESSED, NAMES, Compression, FrameReader
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionError

if TYPE_CHECKING:
    from meshsync.testing.sim import Link, Simulation

Clock = Callable[[], int]
"""Returns one device's wall-clock milliseconds (a fake clock in tests)."""

_LEN_BYTES = 4


def split_frames(data: bytes) -> list[bytes]:
    """Cut bytes a session queued into its frames (4-byte big-endian length + payload).

    Raises ValueError if ``data`` does not end on a frame boundary.
    """
    frames, at = [], 0
    while at < len(data):
        word = int.from_bytes(data[at:at + _LEN_BYTES], "big")
        end = at + _LEN_BYTES + (word & ~COMPRESSED)
        if end > len(data) or at + _LEN_BYTES > len(data):
            raise ValueError(f"bytes end inside a frame at offset {at}")
        frames.append(data[at:end])
        at = end
    return frames


def frame_message(frame: bytes) -> Any:
    """The msgpack array of one frame, compressed or not (a compressed frame is
    inflated with the dictionary it names). Raises what decoding raises."""
    reader = FrameReader()
    if int.from_bytes(frame[:_LEN_BYTES], "big") & COMPRESSED and len(frame) > _LEN_BYTES:
        reader.compression = Compression.of(frame[_LEN_BYTES])
    reader.feed(frame)
    got = reader.next_message()
    if got is None:
        raise ValueError("not a whole frame")
    return got[0]


@dataclass
class _Frame:
    data: bytes
    duplicate: bool = False


class Pipe:
    """One direction of a connection: frames written by one end, not yet read by the other.

    ``consumed`` bytes of the first frame were already read. ``closed`` means the writer
    closed the stream after its last frame: the reader gets EOF (``b""``) once the pipe
    is empty. ``history`` keeps every frame the writer wrote (a transcript for tests).
    """

    def __init__(self) -> None:
        self.frames: deque[_Frame] = deque()
        self.consumed = 0
        self.closed = False
        self.eof_delivered = False
        self.bytes_written = 0
        self.history: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue bytes from the writer (whole frames only)."""
        for frame in split_frames(data):
            self.frames.append(_Frame(frame))
            self.history.append(frame)
        self.bytes_written += len(data)

    @property
    def pending(self) -> int:
        """Bytes written and not yet read."""
        return sum(len(f.data) for f in self.frames) - self.consumed

    @property
    def mid_frame(self) -> bool:
        """True if the reader has part, but not all, of the first frame."""
        return self.consumed > 0

    @property
    def has_eof(self) -> bool:
        """True if the next read would be the writer's EOF."""
        return self.closed and not self.frames and not self.eof_delivered

    def read(self, limit: int) -> tuple[bytes, int]:
        """Take up to ``limit`` bytes; also return how many duplicate frames they complete."""
        out, duplicates = bytearray(), 0
        while self.frames and len(out) < limit:
            head = self.frames[0]
            take = min(limit - len(out), len(head.data) - self.consumed)
            out += head.data[self.consumed:self.consumed + take]
            self.consumed += take
            if self.consumed == len(head.data):
                self.frames.popleft()
                self.consumed = 0
                duplicates += head.duplicate
        return bytes(out), duplicates

    def unread_frames(self) -> list[int]:
        """Indexes of frames of which no byte was read yet."""
        return list(range(1 if self.consumed else 0, len(self.frames)))

    def duplicate(self, index: int) -> bytes:
        """Deliver frame ``index`` twice: a copy follows it (a frame boundary either way)."""
        frame = self.frames[index].data
        self.frames.insert(index + 1, _Frame(frame, duplicate=True))
        return frame

    def drop(self, index: int) -> bytes:
        """Remove an unread frame (a lost frame; the stream behind it is now wrong)."""
        if index not in self.unread_frames():
            raise ValueError("only a frame not yet started can be dropped")
        frame = self.frames[index].data
        del self.frames[index]
        return frame

    def cut(self) -> int:
        """Lose everything in flight (a reset); returns the bytes lost."""
        lost = self.pending
        self.frames.clear()
        self.consumed = 0
        return lost


@dataclass
class Side:
    """What one end of a :class:`SessionPair` saw."""

    events: list[Event] = field(default_factory=list)
    errors: list[SessionError] = field(default_factory=list)
    discarded: int = 0
    """Bytes that arrived after this end's session had finished (its driver stopped reading)."""


class SessionPair:
    """Two sessions joined by two pipes: ``pipes[i]`` carries what ``sessions[i]`` sends.
    Each is a :class:`~meshsync.protocol.peer.Peer`, the session with the node that
    answers its requests, as the trio driver runs it.

    A finished session's stream is closed once its last bytes are queued, so the peer
    reads EOF after them, as through the trio driver. A :class:`SessionError` from
    ``receive_data`` is recorded in ``sides[i].errors``; any other exception propagates.
    """

    def __init__(self, a: Peer, b: Peer, clock_a: Clock, clock_b: Clock) -> None:
        self.sessions = (a, b)
        self.clocks = (clock_a, clock_b)
        self.pipes = (Pipe(), Pipe())
        self.sides = (Side(), Side())
        self.dead = False
        self.duplicates_accepted = 0
        self.flush()

    # -- moving bytes ---------------------------------------------------------------

    def flush(self) -> None:
        """Move what each session queued into its pipe, and collect its events."""
        for session, pipe, side in zip(self.sessions, self.pipes, self.sides, strict=True):
            data = session.data_to_send()
            if data:
                pipe.write(data)
            if session.finished:
                pipe.closed = True
            event = session.next_event()
            while event is not None:
                side.events.append(event)
                event = session.next_event()

    def can_deliver(self, sender: int) -> bool:
        """True if ``pipes[sender]`` holds bytes or an EOF for the other end."""
        pipe = self.pipes[sender]
        return not self.dead and (pipe.pending > 0 or pipe.has_eof)

    def deliver(self, sender: int, limit: int) -> int:
        """Deliver up to ``limit`` (at least 1) bytes, or the EOF, from ``sender`` to the
        other end. Returns the number of bytes moved (0 also when only an EOF moved).
        """
        if not self.can_deliver(sender):
            return 0
        limit = max(1, limit)  # an empty read would be an EOF to the session
        pipe, receiver = self.pipes[sender], 1 - sender
        if pipe.pending == 0:
            pipe.eof_delivered = True
            self._feed(receiver, b"")
            return 0
        data, duplicates = pipe.read(limit)
        self._feed(receiver, data)
        if duplicates and not self.sessions[receiver].finished:
            self.duplicates_accepted += duplicates
        return len(data)

    def _feed(self, receiver: int, data: bytes) -> None:
        session = self.sessions[receiver]
        if session.finished:
            self.sides[receiver].discarded += len(data)
            return
        try:
            session.receive_data(data, self.clocks[receiver]())
        except SessionError as exc:
            self.sides[receiver].errors.append(exc)
        finally:
            self.flush()

    def deliver_frame(self, sender: int) -> int:
        """Deliver the rest of ``sender``'s next frame (or its EOF); returns bytes moved."""
        pipe = self.pipes[sender]
        size = len(pipe.frames[0].data) - pipe.consumed if pipe.frames else 1
        return self.deliver(sender, size)

    def pump(self, chunk: Callable[[int], int] | None = None, *, limit: int = 100_000) -> int:
        """Deliver in both directions until nothing moves; returns the bytes moved.

        ``chunk(pending)`` picks each piece's size (default: everything pending).
        Raises RuntimeError if the pair is still exchanging after ``limit`` pieces.
        """
        moved = 0
        for _ in range(limit):
            ready = [s for s in (0, 1) if self.can_deliver(s)]
            if not ready:
                return moved
            for sender in ready:
                pending = self.pipes[sender].pending
                moved += self.deliver(sender, chunk(pending) if chunk and pending else pending)
        raise RuntimeError(f"session pair still busy after {limit} deliveries")

    # -- faults -----------------------------------------------------------------------

    def reset(self, reason: str = "connection reset") -> int:
        """Break the connection: both ends are aborted and bytes in flight are lost.

        Returns the number of bytes lost.
        """
        lost = sum(pipe.cut() for pipe in self.pipes)
        for session, clock in zip(self.sessions, self.clocks, strict=True):
            session.abort(reason, clock())
        self.dead = True
        self.flush()
        for pipe in self.pipes:
            pipe.cut()  # abort queues nothing today; never deliver it if it did
        return lost

    def go_silent(self) -> None:
        """The link stops carrying anything, unnoticed: only timers can end the sessions."""
        self.dead = True

    def fire_timers(self) -> int:
        """Run ``handle_timer`` on each live end whose deadline has passed; returns how many
        sessions timed out."""
        fired = 0
        for session, clock in zip(self.sessions, self.clocks, strict=True):
            timer, now = session.get_timer(), clock()
            if timer is not None and now >= timer:
                session.handle_timer(now)
                fired += session.finished
        self.flush()
        return fired

    # -- state ------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once both sessions are done or failed."""
        return all(s.finished for s in self.sessions)

    @property
    def stalled(self) -> bool:
        """True if the link works, nothing is in flight, yet a session still waits.

        That is a protocol deadlock: each end waits for the other, and only a timeout
        would end it.
        """
        return not self.dead and not self.finished and not any(
            self.can_deliver(s) for s in (0, 1))

    def next_timer(self) -> int | None:
        """Earliest deadline of a live end, in that end's own clock, as an offset from now
        (ms until it fires), or None."""
        waits = [t - clock() for s, clock in zip(self.sessions, self.clocks, strict=True)
                 if (t := s.get_timer()) is not None]
        return min(waits) if waits else None


def frame_kind(frame: bytes) -> str:
    """The message type of a frame, for traces ("?" if it does not decode)."""
    try:
        kind = frame_message(frame)[0]
    except Exception:
        return "?"
    return NAMES.get(kind, "?") if type(kind) is int else "?"


MINUTE_MS, HOUR_MS = 60_000, 3_600_000


class FaultInjector:
    """The simulator's faults, each drawn from the simulation's one random stream.

    :meth:`inject` picks one by weight: a reset (often cutting a frame in two), a
    crash, a partition, a duplicated frame, a dropped frame, a clock jump.
    """

    KINDS = ("reset", "crash", "partition", "duplicate", "drop", "clock_jump")
    WEIGHTS = (25, 15, 12, 18, 12, 12)

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def inject(self) -> None:
        """Inject one fault."""
        getattr(self, self.sim.rng.choices(self.KINDS, self.WEIGHTS)[0])()

    def live_links(self) -> list[Link]:
        """Links still carrying bytes."""
        return [link for link in self.sim.links.values() if not link.pair.dead]

    def reset(self) -> None:
        """A connection reset; in three cases of five inside a frame."""
        sim = self.sim
        live = self.live_links()
        if not live:
            return
        link = sim.rng.choice(live)
        senders = [s for s in (0, 1) if link.pair.pipes[s].frames]
        if senders and sim.rng.random() < 0.6:  # cut inside the next frame
            sender = sim.rng.choice(senders)
            pipe = link.pair.pipes[sender]
            left = len(pipe.frames[0].data) - pipe.consumed
            if left > 1:
                link.pair.deliver(sender, sim.rng.randint(1, left - 1))
        mid = any(p.mid_frame for p in link.pair.pipes)
        lost = link.pair.reset("connection reset")
        sim.stats.resets += 1
        sim.stats.mid_frame_resets += mid
        sim.note(f"{sim.link_name(link)} reset, {lost} bytes lost{' mid-frame' if mid else ''}")

    def crash(self) -> None:
        """A device dies: its sessions and memory are gone, its store stays; it reboots
        after a while. Its peers see a reset or, half the time, silence."""
        sim = self.sim
        up = sim.up_devices()
        if not up:
            return
        device = sim.rng.choice(up)
        mid_session = False
        for link in sim.links_of(device.index):
            me = link.ends.index(device.index)
            mid_session |= not link.pair.sessions[me].finished
            for pipe in link.pair.pipes:
                pipe.cut()
            link.pair.sessions[me].abort("crashed", device.now())  # a ghost: memory is gone
            if sim.rng.random() < 0.5:
                link.pair.sessions[1 - me].abort("connection reset by peer",
                                                 sim.devices[link.ends[1 - me]].now())
            link.pair.go_silent()
            link.pair.flush()
        device.restart()
        device.down_until = sim.now_ms + sim.rng.randint(1_000, 120_000)
        sim.stats.crashes += 1
        sim.stats.crashes_mid_session += mid_session
        sim.note(f"{device.name} crash{' mid-session' if mid_session else ''}, restarts")

    def partition(self) -> None:
        """A group of devices cannot reach the others for a while."""
        sim = self.sim
        n = len(sim.devices)
        group = set(sim.rng.sample(range(n), sim.rng.randint(1, n // 2)))
        until = sim.now_ms + sim.rng.randint(10_000, 10 * MINUTE_MS)
        for i in sorted(group):
            for j in range(n):
                if j not in group:
                    sim.blocked[(min(i, j), max(i, j))] = until
        for link in self.live_links():
            if (link.ends[0] in group) != (link.ends[1] in group):
                self.break_link(link)
        sim.stats.partitions += 1
        sim.note(f"partition {sorted(group)} until +{until - sim.now_ms} ms")

    def break_link(self, link: Link) -> None:
        """The link stops working: either both ends notice (reset) or nobody does."""
        if self.sim.rng.random() < 0.5:
            link.pair.reset("connection reset")
            self.sim.stats.resets += 1
        else:
            link.pair.go_silent()
            self.sim.stats.silent_links += 1

    def _frames_in_flight(self, unread_only: bool) -> list[tuple[Link, int, int]]:
        out = []
        for link in self.live_links():
            for sender, pipe in enumerate(link.pair.pipes):
                indexes = pipe.unread_frames() if unread_only else range(len(pipe.frames))
                out += [(link, sender, i) for i in indexes]
        return out

    def duplicate(self) -> None:
        """A frame in flight is delivered twice; the receiver must refuse the copy."""
        choices = self._frames_in_flight(unread_only=False)
        if choices:
            link, sender, index = self.sim.rng.choice(choices)
            frame = link.pair.pipes[sender].duplicate(index)
            self.sim.stats.duplicates += 1
            self.sim.note(f"{self.sim.link_name(link)} duplicate {frame_kind(frame)} "
                          f"from side {sender}")

    def drop(self) -> None:
        """A frame in flight is lost, and with it the connection."""
        choices = self._frames_in_flight(unread_only=True)
        if choices:
            link, sender, index = self.sim.rng.choice(choices)
            frame = link.pair.pipes[sender].drop(index)
            self.sim.stats.drops += 1
            self.sim.note(f"{self.sim.link_name(link)} drop {frame_kind(frame)} "
                          f"from side {sender}")
            self.break_link(link)

    def clock_jump(self) -> None:
        """A device's clock jumps by minutes or hours, either way."""
        rng = self.sim.rng
        device = rng.choice(self.sim.devices)
        unit = rng.choice((MINUTE_MS, HOUR_MS))
        jump = rng.choice((1, -1)) * rng.randint(1, 12 if unit == HOUR_MS else 30) * unit
        device.offset_ms += jump
        self.sim.stats.clock_jumps += 1
        self.sim.note(f"{device.name} clock jumps {jump // 1000:+} s")


__all__ = ["Clock", "FaultInjector", "Pipe", "SessionPair", "Side", "frame_kind",
           "split_frames"]
