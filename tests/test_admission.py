"""Caps on unauthenticated connections and the rate-limited refusal log (issue 14).

Pure unit tests of :mod:`meshsync.net.admission` (no sockets); the real flood against
``meshsync serve`` is in test_conn_flood.py.
"""

from __future__ import annotations

import logging

import pytest
import trio
from meshsync.daemon.config import DEFAULTS, validate

from meshsync.model.errors import UsageError
from meshsync.net.admission import Admission, ConnectionLimits, RefusalLog, Ticket


def admit(gate: Admission, source: str) -> tuple[Ticket, trio.CancelScope]:
    scope = trio.CancelScope()
    return gate.admit(source, scope), scope


@pytest.mark.trio
async def test_global_cap_sheds_the_oldest_idle_connection_first() -> None:
    gate = Admission(ConnectionLimits(max_handshakes=3, max_per_source=10))
    first, first_scope = admit(gate, "10.0.0.1")
    second, second_scope = admit(gate, "10.0.0.2")
    first.idle = False  # it sent its ClientHello
    admit(gate, "10.0.0.3")
    admit(gate, "10.0.0.4")  # over the cap: the oldest idle one goes, not the handshaking
    assert second_scope.cancel_called and not first_scope.cancel_called
    assert second.shed_reason is not None and "max_handshakes" in second.shed_reason
    assert len(gate) == 3 and gate.shed_total == 1


@pytest.mark.trio
async def test_handshaking_ones_are_shed_oldest_first_when_none_is_idle() -> None:
    gate = Admission(ConnectionLimits(max_handshakes=2, max_per_source=10))
    tickets = [admit(gate, f"10.0.0.{n}") for n in range(2)]
    for ticket, _ in tickets:
        ticket.idle = False
    admit(gate, "10.0.0.9")
    assert [scope.cancel_called for _, scope in tickets] == [True, False]


@pytest.mark.trio
async def test_per_source_cap_sheds_only_that_sources_connections() -> None:
    gate = Admission(ConnectionLimits(max_handshakes=100, max_per_source=2))
    _, other = admit(gate, "10.0.0.7")
    _, oldest = admit(gate, "10.0.0.1")
    _, newer = admit(gate, "10.0.0.1")
    admit(gate, "10.0.0.1")
    assert oldest.cancel_called and not newer.cancel_called and not other.cancel_called
    assert len(gate) == 3


@pytest.mark.trio
async def test_released_connections_no_longer_count() -> None:
    gate = Admission(ConnectionLimits(max_handshakes=1, max_per_source=1))
    ticket, scope = admit(gate, "10.0.0.1")
    gate.release(ticket)  # authenticated: never shed
    gate.release(ticket)  # twice is harmless
    admit(gate, "10.0.0.1")
    assert not scope.cancel_called and len(gate) == 1 and gate.shed_total == 0


def test_refusal_log_counts_beyond_five_per_stage_and_window(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("test.refusals"), 60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for n in range(10_487):
            refusals.refused(("10.0.0.1", n), "load", "shed")
        refusals.refused(("10.0.0.2", 1), "tls", "bad certificate")
        now[0] = 61.0
        refusals.refused(("10.0.0.3", 1), "load", "shed")  # a new window: flushed first
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5 + 1 + 1 + 1
    assert "refused ... and 10,482 more at load in the last minute" in messages
    assert messages[-1] == "refused 10.0.0.3:1 at load: shed"


@pytest.mark.parametrize(("key", "value"), [("max_handshakes", 0),
                                            ("max_handshakes_per_source", 1.5),
                                            ("refusal_log_interval_s", 0)])
def test_bad_cap_values_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(UsageError, match=f"config {key}:"):
        validate({**DEFAULTS, key: value})


def test_config_caps_reach_the_limits() -> None:
    config = validate({**DEFAULTS, "max_handshakes": 64, "max_handshakes_per_source": 4})
    assert config.limits() == ConnectionLimits(64, 4, 60.0)
