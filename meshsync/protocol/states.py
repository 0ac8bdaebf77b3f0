"""The session's states and its transition table, as data (h11's ``_state.py`` shape).

:data:`TRANSITIONS` maps ``(state, what happened)`` to the next state. What happened
is either a message received from the peer (a class of
:mod:`meshsync.protocol.messages`) or a :class:`Step` this side took (it sent SENT_ALL
or FIN, or the SUMMARY digests were equal). A received message whose pair is missing
is a protocol error; the session (:mod:`meshsync.protocol.session`) moves to the next
state only through this table. FAILED is reached from any live state, by an error of
either side or a timeout, outside the table. ``python -m meshsync.protocol.diagram``
draws it into docs/protocol.md.
"""

from __future__ import annotations

from enum import StrEnum

from meshsync.protocol.messages import (
    Ack,
    Changes,
    Credentials,
    Error,
    Fin,
    Hello,
    Message,
    Receipts,
    SentAll,
    Summary,
    VersionVectors,
    name,
)


class State(StrEnum):
    """Session states. Both ends go through the same ones."""

    HELLO = "await-hello"
    SUMMARY = "await-summary"
    VV = "await-vv"
    STREAM = "streaming"
    """Both sides still send changes."""
    SENT_ALL = "sent-all"
    """This side sent SENT_ALL; the peer still sends changes."""
    PEER_SENT_ALL = "peer-sent-all"
    """The peer sent SENT_ALL; this side still sends changes."""
    CLOSING = "closing"
    """Both sent SENT_ALL; this side waits for the ACKs of its last frames."""
    FIN = "await-fin"
    """This side sent FIN."""
    DONE = "done"
    FAILED = "failed"


class Step(StrEnum):
    """What this side does that moves its own state."""

    SAME = "same digests"
    """The SUMMARY digests are equal (or the scopes disjoint): nothing to exchange."""
    SENT_ALL = "send sent-all"
    FIN = "send fin"


Trigger = type[Message] | Step
"""A received message's type, or a step of this side."""

LIVE = (State.HELLO, State.SUMMARY, State.VV, State.STREAM, State.SENT_ALL,
        State.PEER_SENT_ALL, State.CLOSING, State.FIN)

#: The streaming phase: after the VV messages, before this side's FIN.
STREAMING = (State.STREAM, State.SENT_ALL, State.PEER_SENT_ALL, State.CLOSING)

#: States in which the peer has sent its SENT_ALL (a CRED or RCPT may come once before
#: and once after it).
AFTER_PEER_SENT_ALL = (State.PEER_SENT_ALL, State.CLOSING, State.FIN)

_STAY_STREAMING: dict[State, tuple[type[Message], ...]] = {
    # Messages that keep the state: changes and acks both ways, credentials and receipts.
    State.STREAM: (Credentials, Receipts, Changes, Ack),
    State.SENT_ALL: (Credentials, Receipts, Changes, Ack),
    State.PEER_SENT_ALL: (Credentials, Receipts, Ack),
    State.CLOSING: (Credentials, Receipts, Ack),
    State.FIN: (Receipts,),
}

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.HELLO, Hello): State.SUMMARY,
    (State.SUMMARY, Summary): State.VV,
    (State.VV, Step.SAME): State.DONE,
    (State.VV, VersionVectors): State.STREAM,
    (State.STREAM, SentAll): State.PEER_SENT_ALL,
    (State.STREAM, Step.SENT_ALL): State.SENT_ALL,
    (State.SENT_ALL, SentAll): State.CLOSING,
    (State.PEER_SENT_ALL, Step.SENT_ALL): State.CLOSING,
    (State.CLOSING, Step.FIN): State.FIN,
    (State.FIN, Fin): State.DONE,
    **{(state, kind): state for state, kinds in _STAY_STREAMING.items() for kind in kinds},
    **{(state, Error): State.FAILED for state in LIVE},
}
"""Every legal ``(state, trigger)`` pair and the state it leads to."""


def next_state(state: State, trigger: Trigger) -> State | None:
    """The state after ``trigger`` in ``state``, or None if the table has no such pair."""
    return TRANSITIONS.get((state, trigger))


def trigger_name(trigger: Trigger) -> str:
    """How the diagram and errors name a trigger: ``"recv ack"``, ``"send fin"``."""
    if isinstance(trigger, Step):
        return trigger.value
    return f"recv {name(trigger)}"
