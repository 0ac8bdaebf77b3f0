"""The simulator's configuration, counters and result (see :mod:`meshsync.testing.sim`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimConfig:
    """One simulated district. The seed decides everything else."""

    seed: int = 0
    devices: int = 10
    steps: int = 500
    faults: bool = True
    max_heal_rounds: int = 6

    def replay(self) -> str:
        """The command that replays this run with its trace."""
        extra = "" if self.faults else " --no-faults"
        return (f"python -m meshsync.testing.sim --seed {self.seed} --devices {self.devices}"
                f" --steps {self.steps}{extra} -v")


@dataclass
class SimStats:
    """What happened in one run (faults injected and their effects)."""

    edits: int = 0
    sessions: int = 0
    sessions_done: int = 0
    sessions_failed: int = 0
    converged: int = 0
    changes_moved: int = 0
    receipts_moved: int = 0
    resets: int = 0
    mid_frame_resets: int = 0
    crashes: int = 0
    crashes_mid_session: int = 0
    partitions: int = 0
    refused_connects: int = 0
    duplicates: int = 0
    drops: int = 0
    silent_links: int = 0
    clock_jumps: int = 0
    skewed_devices: int = 0
    timeouts: int = 0
    protocol_errors: int = 0
    heal_rounds: int = 0
    heal_sessions: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counters by name."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SimResult:
    """A converged run: its counters, the digest of its event trace and of the state."""

    config: SimConfig
    stats: SimStats
    changes: int
    trace_digest: str
    state_digest: str
    trace: tuple[str, ...] = field(repr=False)


class SimulationFailure(AssertionError):
    """A simulated run broke an invariant; the message names the seed and the replay."""
