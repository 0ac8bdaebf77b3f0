"""Run the discovery cascade (docs/architecture.md §7): every method at once, each supervised.

mDNS, the broadcast beacon, the default gateway and static peers all run side by side
in one nursery; the "cascade" is one of coverage, not of sequence, because each one
fails in different places (AP isolation, multicast filtering, hotspot hosts: B01-B03)
and running them all costs a few datagrams a minute. A method that raises is logged
and restarted after an exponential backoff with jitter; it never stops the others.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import trio

from meshsync.model.errors import UsageError
from meshsync.net.discovery.model import AdvertSource, Candidate, DiscoveryMethod, FoundCallback

log = logging.getLogger("meshsync.discovery")


@dataclass(frozen=True)
class MethodStatistics:
    """A snapshot of one method for the daemon's status page.

    Attributes:
        name: the method's name (``mdns``, ``broadcast``, ``gateway``, ``static``).
        state: ``starting``, ``running``, ``retrying`` (waiting after a failure) or
            ``finished`` (``run`` returned, which methods normally never do).
        candidates: candidates reported since the cascade started.
        errors: failures so far; ``last_error`` describes the latest.
        restarts: how often the method was started again after a failure.
        retry_in_s: seconds until the next attempt while ``retrying``, else ``None``.
        extra: the method's own ``statistics()``, if it has one.
    """

    name: str
    state: str
    candidates: int
    errors: int
    last_error: str | None
    restarts: int
    retry_in_s: float | None
    extra: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class _Slot:
    method: DiscoveryMethod
    state: str = "starting"
    candidates: int = 0
    errors: int = 0
    last_error: str | None = None
    restarts: int = 0
    failures_in_row: int = 0
    retry_at: float | None = None


class DiscoveryCascade:
    """Supervise several discovery methods.

    Args:
        methods: the methods, each with a distinct ``name``.
        backoff_min_s, backoff_max_s: first and longest wait before a restart; the
            wait doubles with each failure in a row, ± 20 % jitter.
        stable_s: a method that ran this long before failing starts over at
            ``backoff_min_s``.
        rng: randomness for the jitter (seed it in tests).

    Raises:
        UsageError: two methods share a name, or the backoff bounds are not positive.
    """

    def __init__(self, methods: Sequence[DiscoveryMethod], *, backoff_min_s: float = 2.0,
                 backoff_max_s: float = 300.0, stable_s: float = 60.0,
                 rng: random.Random | None = None) -> None:
        names = [m.name for m in methods]
        if len(set(names)) != len(names):
            raise UsageError(f"discovery methods must have distinct names (got {names})")
        if not 0 < backoff_min_s <= backoff_max_s:
            raise UsageError("discovery backoff: need 0 < backoff_min_s <= backoff_max_s")
        self._slots = {m.name: _Slot(m) for m in methods}
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.stable_s = stable_s
        self._rng = rng or random.Random()

    def statistics(self) -> dict[str, MethodStatistics]:
        """A snapshot per method, keyed by name (call from the trio thread)."""
        now = _now()
        out = {}
        for name, slot in self._slots.items():
            own = getattr(slot.method, "statistics", None)
            retry = None if slot.retry_at is None or now is None else max(0.0, slot.retry_at - now)
            out[name] = MethodStatistics(name, slot.state, slot.candidates, slot.errors,
                                         slot.last_error, slot.restarts, retry,
                                         dict(own()) if callable(own) else {})
        return out

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[DiscoveryCascade] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Run every method until cancelled.

        ``task_status.started(self)`` comes once each method has either started or
        failed its first attempt, so ``await nursery.start(cascade.run, ...)`` returns
        the cascade (for :meth:`statistics`). Exceptions of methods (including those of
        ``found``) are caught, logged and counted; cancellation stops every method.
        """
        async with trio.open_nursery() as nursery:
            first_attempts = []
            for slot in self._slots.values():
                done = trio.Event()
                first_attempts.append(done)
                nursery.start_soon(self._supervise, slot, advert, found, done)
            for done in first_attempts:
                await done.wait()
            task_status.started(self)

    async def _supervise(self, slot: _Slot, advert: AdvertSource, found: FoundCallback,
                         first_attempt: trio.Event) -> None:
        def counted(candidate: Candidate) -> None:
            slot.candidates += 1
            found(candidate)

        while True:
            slot.state, slot.retry_at, began = "starting", None, trio.current_time()
            try:
                async with trio.open_nursery() as inner:
                    await inner.start(slot.method.run, advert, counted)
                    slot.state = "running"
                    first_attempt.set()
            except Exception as exc:
                delay = self._failed(slot, _unwrap(exc), trio.current_time() - began)
                first_attempt.set()
                await trio.sleep(delay)
                slot.restarts += 1
            else:
                slot.state = "finished"
                first_attempt.set()
                return

    def _failed(self, slot: _Slot, exc: BaseException, ran_s: float) -> float:
        slot.failures_in_row = 1 if ran_s >= self.stable_s else slot.failures_in_row + 1
        delay = min(self.backoff_max_s, self.backoff_min_s * 2.0 ** (slot.failures_in_row - 1))
        delay *= self._rng.uniform(0.8, 1.2)
        slot.errors += 1
        slot.last_error = f"{type(exc).__name__}: {exc}"
        slot.state, slot.retry_at = "retrying", trio.current_time() + delay
        log.warning("discovery %s failed (%s); retrying in %.1f s", slot.method.name,
                    slot.last_error, delay, exc_info=exc if not isinstance(exc, OSError) else None)
        return delay


async def run_cascade(methods: Sequence[DiscoveryMethod], advert: AdvertSource,
                      found: FoundCallback, *,
                      task_status: trio.TaskStatus[DiscoveryCascade] = trio.TASK_STATUS_IGNORED,
                      backoff_min_s: float = 2.0, backoff_max_s: float = 300.0) -> None:
    """Run ``methods`` in a :class:`DiscoveryCascade` until cancelled.

    ``cascade = await nursery.start(run_cascade, methods, board, found)`` gives the
    cascade, whose ``statistics()`` feeds the status page. See
    :meth:`DiscoveryCascade.run` for started, errors and cancellation.
    """
    cascade = DiscoveryCascade(methods, backoff_min_s=backoff_min_s,
                               backoff_max_s=backoff_max_s)
    await cascade.run(advert, found, task_status=task_status)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _now() -> float | None:
    try:
        return float(trio.current_time())
    except RuntimeError:  # outside trio.run
        return None
