"""Run many simulator seeds on every core (test_simulator.py runs 200).

Each seed is independent and pure (:func:`meshsync.testing.sim.simulate`), so the seeds
are spread over worker processes; a seed that fails returns its failure text instead of
a :class:`~meshsync.testing.model.SimResult`, exactly as a serial loop would record it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from meshsync.testing.model import SimConfig, SimResult, SimulationFailure
from meshsync.testing.sim import simulate


def run_seed(config: SimConfig) -> SimResult | str:
    """``simulate(config)``, or the failure text of a seed that did not converge."""
    try:
        return simulate(config)
    except SimulationFailure as exc:
        return str(exc)


def run_seeds(configs: Iterable[SimConfig], workers: int | None = None) -> list[SimResult | str]:
    """:func:`run_seed` of every config, in order, on ``workers`` processes (default:
    the cores this process may use; 1 runs them here, serially).

    Workers start by ``forkserver`` (never ``fork`` from a process that may hold
    threads). An exception other than :class:`SimulationFailure` propagates.
    """
    todo = list(configs)
    workers = workers or len(os.sched_getaffinity(0))
    if workers <= 1 or len(todo) <= 1:
        return [run_seed(c) for c in todo]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(run_seed, todo, chunksize=max(1, len(todo) // (workers * 8))))
