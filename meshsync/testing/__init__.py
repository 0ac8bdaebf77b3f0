"""Test tools that ship with meshsync: the fake network and the seeded district simulator.

This package is part of the sans-I/O side (docs/architecture.md §3): it never imports trio, socket,
ssl or zeroconf, and never reads the clock; every device's time is a fake clock the
simulator moves by hand.

* :mod:`meshsync.testing.faults`: frame-aware byte pipes and ``SessionPair``, two
  peers (each a session and the node that owns it) joined by them, with the fault
  hooks (cut, duplicate, drop, silence).
* :mod:`meshsync.testing.sim`: ``simulate(SimConfig(seed=N))``, a whole district from
  one seed; ``python -m meshsync.testing.sim --seed N -v`` replays it.

The submodules are not imported here, so ``python -m meshsync.testing.sim`` runs the
module once, as ``__main__``.
"""
