"""CHANGES frames both ways, for :class:`meshsync.protocol.session.SyncSession`.

:class:`SendWindow`: this side's frames in flight (numbering, the window, acks, and the
feeds the peer asks for again: a fork behind a short feed item,
:mod:`meshsync.protocol.stream`); the frames come from an
:class:`~meshsync.protocol.stream.OutgoingChanges` whose changes the session's owner
gave. :class:`ReceiveWindow`: the peer's frames, in order, decoded. Pure bookkeeping:
no node, no store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from meshsync.model.change import Change, FeedId
from meshsync.protocol.messages import Ack, Changes, SessionError
from meshsync.protocol.meta import Holdings
from meshsync.protocol.stream import OutgoingChanges, SessionDecoder, changes_frame


class SendWindow:
    """At most ``window`` unacknowledged CHANGES frames, numbered from 1."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sent = self.acked = 0
        self.wanted_again: deque[FeedId] = deque()
        """Feeds an ACK asked for again, whose changes the owner has yet to give."""
        self._outgoing: OutgoingChanges | None = None
        self._last_short = 0  # last frame with a short feed item (its ACK may ask again)
        self._empty = False  # the last look found nothing more to send

    def start(self, outgoing: OutgoingChanges) -> None:
        """Send ``outgoing``'s frames from now on."""
        self._outgoing = outgoing

    def send_again(self, feed: FeedId, changes: Iterator[Change]) -> None:
        """Queue ``changes`` of ``feed``, asked for again, with full feed items."""
        assert self._outgoing is not None
        self._outgoing.send_again(feed, changes)

    def frames(self) -> Iterator[tuple[bytes, int]]:
        """The next CHANGES frames while the window allows: ``(frame, changes in it)``."""
        assert self._outgoing is not None
        while self.sent - self.acked < self.window:
            items, count, short = self._outgoing.next_batch()
            self._empty = not items
            if not items:
                return
            self.sent += 1
            if short:
                self._last_short = self.sent
            yield changes_frame(self.sent, items), count

    @property
    def done(self) -> bool:
        """Everything is sent, and no unacknowledged frame can still ask for a feed
        again: time for SENT_ALL."""
        return self._empty and self.acked >= self._last_short

    @property
    def all_acked(self) -> bool:
        """Every frame sent is acknowledged."""
        return self.acked == self.sent

    def ack(self, message: Ack, *, sent_all: bool) -> None:
        """Take the peer's ACK (``sent_all``: this side already sent SENT_ALL); the feeds
        it asks for again go to :attr:`wanted_again`. Raises :class:`SessionError` for
        an ACK out of order or asking after SENT_ALL, and (stage ``decode``) for a feed
        that was never sent with a short feed item or was asked for already."""
        if message.batch != self.acked + 1 or message.batch > self.sent:
            raise SessionError("unexpected ack")
        if message.resend:
            if sent_all:
                raise SessionError("malformed ack or feeds asked for after sent-all")
            assert self._outgoing is not None
            self.wanted_again.extend(self._outgoing.resend(i) for i in message.resend)
        self.acked += 1


class ReceiveWindow:
    """The peer's CHANGES frames: their order, their items decoded against what this
    side's VV message said it holds, and the feeds the next ACK asks for again;
    :attr:`heads` keeps, per feed, the ``(seq, hash)`` of the last change received (what
    a receipt issued at the end of the session names)."""

    def __init__(self, held: Holdings) -> None:
        self.received = 0
        self.heads: dict[FeedId, tuple[int, bytes]] = {}
        self._decoder = SessionDecoder(held)
        self._resend: list[int] = []

    def read(self, message: Changes, in_scope: Callable[[FeedId], bool]) -> list[Change]:
        """The changes of frame ``message``. Raises :class:`SessionError` for a frame out
        of order or a feed outside the shared scope (stage ``policy``), and
        :class:`~meshsync.model.errors.DecodeError` for a malformed item."""
        if message.batch != self.received + 1:
            raise SessionError("malformed or out-of-order changes frame")
        self.received += 1
        changes = []
        for item in message.items:
            change = self._decoder.decode(item)
            if change is None:
                continue
            if not in_scope(change.feed):
                raise SessionError(f"peer sent feed {change.partition} outside the shared "
                                   "scope", stage="policy")
            changes.append(change)
            if change.seq >= self.heads.get(change.feed, (0, b""))[0]:
                self.heads[change.feed] = (change.seq, change.hash)
        self._resend = self._decoder.take_resend()
        return changes

    def ack(self, batch: int) -> Ack:
        """The ACK of frame ``batch``, once it is committed."""
        resend, self._resend = self._resend, []
        return Ack(batch, tuple(resend))
