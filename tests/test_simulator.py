"""The seeded district simulator (docs/architecture.md §10.2).

200 seeds of 10 devices each converge.

Each seed runs the real node, session, merge and memory store through a fault phase
(resets mid-frame, crashes, partitions, clock skew and jumps, duplicated and dropped
frames) and a heal phase, then checks convergence (see :mod:`meshsync.testing.sim`).
A failing seed replays with ``python -m meshsync.testing.sim --seed N -v``.
"""

from __future__ import annotations

import ast
import time
from collections import Counter
from pathlib import Path

import pytest
from sim_seeds import run_seeds

import meshsync.testing
from meshsync.protocol import messages as msg
from meshsync.protocol import session as session_module
from meshsync.protocol import states
from meshsync.protocol.events import ChangesReceived
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SyncSession
from meshsync.protocol.states import State
from meshsync.replica.receive import ApplyReport
from meshsync.testing import sim
from meshsync.testing.sim import SimConfig, SimResult, SimulationFailure, simulate

SEEDS = range(200)
DEVICES = 10
STEPS = 500


@pytest.fixture(scope="module")
def runs() -> dict[int, SimResult | str]:
    """Every seed's result, or its failure text (the seeds run once for all tests here)."""
    results = run_seeds(SimConfig(seed, DEVICES, STEPS) for seed in SEEDS)  # every core
    return dict(zip(SEEDS, results, strict=True))


def test_every_seed_converges(runs: dict[int, SimResult | str]) -> None:
    failures = {seed: r for seed, r in runs.items() if isinstance(r, str)}
    assert not failures, (f"{len(failures)} of {len(runs)} seeds failed: {sorted(failures)}\n\n"
                          + "\n\n".join(failures.values()))
    assert all(isinstance(r, SimResult) and r.changes > 0 for r in runs.values())


def test_faults_were_injected_and_survived(runs: dict[int, SimResult | str]) -> None:
    """The suite cannot silently test nothing: every kind of fault happened, often."""
    totals: Counter[str] = Counter()
    for result in runs.values():
        if isinstance(result, SimResult):
            totals.update(result.stats.as_dict())
    assert totals["edits"] >= 10 * len(SEEDS) * DEVICES
    assert totals["receipts_moved"] > 0  # the gateway's custody receipts travelled too
    for fault in ("resets", "mid_frame_resets", "crashes", "crashes_mid_session",
                  "partitions", "refused_connects", "duplicates", "drops", "silent_links",
                  "clock_jumps", "skewed_devices", "timeouts", "protocol_errors"):
        assert totals[fault] >= len(SEEDS) // 10, (fault, totals)
    assert totals["sessions_failed"] > 0 and totals["sessions_done"] > totals["sessions_failed"]
    # Syncing happened during the faults, not only in the heal phase.
    assert totals["changes_moved"] > totals["edits"] * 3
    # A duplicate met a live session often enough to prove the refusal: each protocol
    # error is a frame a session refused.
    assert totals["protocol_errors"] >= totals["duplicates"] // 4


def test_a_seed_replays_identically() -> None:
    first, second = simulate(SimConfig(7, DEVICES, STEPS)), simulate(SimConfig(7, DEVICES, STEPS))
    assert first.trace_digest == second.trace_digest
    assert first.state_digest == second.state_digest
    assert first.trace == second.trace
    assert first.stats == second.stats
    other = simulate(SimConfig(8, DEVICES, STEPS))
    assert other.trace_digest != first.trace_digest
    assert other.state_digest != first.state_digest


def test_without_faults_every_session_converges() -> None:
    result = simulate(SimConfig(3, DEVICES, STEPS, faults=False))
    stats = result.stats
    assert stats.resets == stats.crashes == stats.duplicates == stats.drops == 0
    assert stats.protocol_errors == 0
    assert stats.heal_rounds <= 2


def test_a_session_that_accepts_duplicates_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator fails, naming the seed and the replay command, when the session
    lets a duplicated frame through (as it once did for SENT_ALL)."""

    def lenient(self: SyncSession, message: msg.SentAll) -> None:
        self._maybe_end()  # no count check, and (below) accepted in any later state

    monkeypatch.setitem(session_module._HANDLERS, msg.SentAll, lenient)
    for state in (State.PEER_SENT_ALL, State.CLOSING, State.FIN):
        monkeypatch.setitem(states.TRANSITIONS, (state, msg.SentAll), state)
    for seed in range(30):
        try:
            simulate(SimConfig(seed, DEVICES, STEPS))
        except SimulationFailure as exc:
            text = str(exc)
            break
    else:
        pytest.fail("no seed noticed a session accepting duplicated SENT_ALL frames")
    assert f"seed {seed}" in text and "accepted a duplicated frame" in text
    assert f"python -m meshsync.testing.sim --seed {seed} --devices {DEVICES}" in text


def test_acknowledging_without_storing_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver that acknowledges a frame it did not commit (B16) loses changes: the
    simulator must notice."""
    original = Peer._apply
    seen = Counter[int]()

    def forgetful(self: Peer, request: ChangesReceived) -> ApplyReport:
        seen[id(self)] += 1
        if seen[id(self)] == 2:  # the second frame of each session: ack, store nothing
            return ApplyReport()
        return original(self, request)

    monkeypatch.setattr(Peer, "_apply", forgetful)
    with pytest.raises(SimulationFailure, match=r"seed 1: .*\n  replay: python -m"):
        simulate(SimConfig(1, DEVICES, STEPS))


def test_cli_replays_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--seed", "5", "--steps", "60", "-v"]) == 0
    out = capsys.readouterr().out
    assert "seed 5: converged" in out and "anti-entropy round 1" in out


def test_simulator_never_reads_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> float:
        raise AssertionError("the simulator read the real clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, forbidden)
    simulate(SimConfig(11, DEVICES, 150))


def test_testing_package_is_sans_io() -> None:
    """No trio, socket, ssl, zeroconf or clock module in meshsync/testing (architecture §3)."""
    banned = {"trio", "socket", "ssl", "zeroconf", "time", "datetime", "asyncio", "threading"}
    package = Path(meshsync.testing.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
                assert not name.startswith("meshsync.net"), f"{path.name} imports {name}"

