"""Seeded, single-thread district simulator (docs/architecture.md §10, level 2).

One ``random.Random(seed)`` drives a whole district running the real core: a gateway
laptop (which signs custody receipts) and phones, each a :class:`~meshsync.replica.node.Node` on a
:class:`~meshsync.store.MemoryStore` with its own fake clock, syncing through real
:class:`~meshsync.protocol.peer.Peer` pairs (sessions and their nodes) joined by a fake network
(:mod:`meshsync.testing.faults`). No trio, no sockets, no real clock.

**Fault phase.** Each step is one of: a local edit (puts, deletes and multi-record
writes to the phone's TPS, and edits of any record the device has seen, so phones edit
the same records concurrently); starting a session between two devices; delivering
bytes of a connection in pieces of random size; moving time (which fires session
timers); or a fault: a connection reset (sometimes in the middle of a frame; bytes in
flight are lost), a crash (the device loses every session and its in-memory state,
keeps its store and restarts from it, down for a while), a partition (groups that
cannot connect for a while), a clock jump, a duplicated frame (the receiving session
must fail on it) or a dropped frame (the link then resets or goes silent until the
sessions time out). Devices start with skewed clocks, some hours off.

**Heal phase.** No more faults: in-flight sessions run to their end, then anti-entropy
rounds sync every pair (every such session must end done and converged) until a round
moves nothing.

**Checks.** Every device's ``canonical_state()`` is byte-identical, version vectors are
equal, every change ever written is held everywhere with its hash, every feed is a
consistent hash chain, nothing was refused, no custody receipt claims a change its
issuer lacks (B16), the clock in memory is the stored one, and replaying the written changes into a
fresh node in another feed order gives the same state. During the run: no session
accepts a duplicated frame, no connection deadlocks, every session ends with exactly
one final event. A failure raises :class:`SimulationFailure` naming the seed and the
command that replays it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshsync.model.change import Change, FeedId
from meshsync.model.identity import DeviceKey
from meshsync.protocol.events import SessionDone, SessionFailed
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig
from meshsync.replica.node import Node
from meshsync.store import MemoryStore
from meshsync.testing.checks import check_store, state_diff
from meshsync.testing.faults import HOUR_MS, MINUTE_MS, FaultInjector, SessionPair
from meshsync.testing.model import SimConfig, SimResult, SimStats, SimulationFailure

DISTRICT = "mimika/jila"
MESH_ID = "kpu-mimika-2024"
VILLAGES = ("diloa", "jila", "amua", "noemun", "wandai")
COLLECTION = "voters"
STATUSES = ("aktif", "pindah", "meninggal", "kembali", "baru", "ganda")
KEYS_PER_TPS = 12
BASELINE_PER_TPS = 6
EPOCH_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MAX_LINKS_PER_DEVICE = 3
TRACE_TAIL = 25

ACTIONS = ("_edit", "_connect", "_deliver", "_tick", "_fault")
WEIGHTS = (40, 12, 38, 10, 10)


class SimDevice:
    """One device: its key and store survive crashes; its node and sessions do not."""

    def __init__(self, sim: Simulation, index: int, key: DeviceKey, home: str) -> None:
        self.sim, self.index, self.key, self.home = sim, index, key, home
        self.name = "gw" if index == 0 else f"p{index}"
        self.store = MemoryStore()
        self.offset_ms = 0
        self.down_until = 0
        rng = sim.rng
        self.config = SessionConfig(
            mesh_id=MESH_ID, role="gateway" if index == 0 else "pantarlih",
            share_scope=DISTRICT, window=rng.randint(1, 4),
            frame_target=rng.choice((200, 400, 1000, 4000, 64 * 1024)),
            issue_receipts=index == 0)  # the gateway signs custody receipts
        self.node = self._boot()

    def now(self) -> int:
        """This device's wall clock (the district's fake time plus its skew)."""
        return self.sim.now_ms + self.offset_ms

    def _boot(self) -> Node:
        return Node(self.store, self.key, self.now, default_partition=self.home)

    def restart(self) -> None:
        """Lose everything in memory; start again from the store (a crash and reboot)."""
        self.node = self._boot()


@dataclass(eq=False)
class Link:
    """An open connection between devices ``ends`` (indexes), carrying ``pair``."""

    ident: int
    ends: tuple[int, int]
    pair: SessionPair


class Simulation:
    """One run; use :func:`simulate`."""

    def __init__(self, config: SimConfig, log: Callable[[str], None] | None = None) -> None:
        if config.devices < 2:
            raise ValueError("a district needs at least two devices")
        self.config, self.log = config, log
        self.rng = random.Random(config.seed)
        self.stats = SimStats()
        self.now_ms = EPOCH_MS
        self.trace: list[str] = []
        self._trace_hash = hashlib.sha256()
        self.tps = [f"{DISTRICT}/{VILLAGES[k % len(VILLAGES)]}/tps-{k + 1:03d}"
                    for k in range(max(2, (config.devices - 1) // 2))]
        self.devices = [self._new_device(i) for i in range(config.devices)]
        self.links: dict[int, Link] = {}
        self.blocked: dict[tuple[int, int], int] = {}
        self.ledger: dict[tuple[bytes, str, int], Change] = {}
        self._next_link = 0
        self._faults = config.faults
        self.injector = FaultInjector(self)

    def _new_device(self, index: int) -> SimDevice:
        key = DeviceKey(Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32)))
        home = DISTRICT if index == 0 else self.tps[(index - 1) % len(self.tps)]
        device = SimDevice(self, index, key, home)
        if self.rng.random() < 0.3:
            device.offset_ms = self.rng.choice((1, -1)) * self.rng.choice(
                (self.rng.randint(1, 6) * HOUR_MS, 24 * HOUR_MS))
        else:
            device.offset_ms = self.rng.randint(-30_000, 30_000)
        self.stats.skewed_devices += abs(device.offset_ms) > 2 * MINUTE_MS
        return device

    def note(self, line: str) -> None:
        """Add a line to the event trace."""
        line = f"{self.now_ms - EPOCH_MS:>9} {line}"
        self.trace.append(line)
        self._trace_hash.update(line.encode() + b"\n")
        if self.log is not None:
            self.log(line)

    # -- the run ------------------------------------------------------------------

    def run(self) -> SimResult:
        """Fault phase, heal phase, checks. Raises :class:`SimulationFailure`."""
        try:
            self._baseline()
            for _ in range(self.config.steps):
                self._expire_partitions()
                getattr(self, self.rng.choices(ACTIONS, WEIGHTS)[0])()
                self._reap()
            self._heal()
            state = self._check()
        except Exception as exc:
            raise SimulationFailure(self._failure_text(exc)) from exc
        self.note(f"converged: {len(self.ledger)} changes on {len(self.devices)} devices")
        return SimResult(self.config, self.stats, len(self.ledger),
                         self._trace_hash.hexdigest(), hashlib.sha256(state).hexdigest(),
                         tuple(self.trace))

    def _failure_text(self, exc: Exception) -> str:
        what = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
        tail = "\n    ".join(self.trace[-TRACE_TAIL:])
        return (f"district simulation failed, seed {self.config.seed}: {what}\n"
                f"  replay: {self.config.replay()}\n  last events:\n    {tail}")

    # -- local edits ----------------------------------------------------------------

    def _baseline(self) -> None:
        """Central's baseline list, brought in by the gateway: one change per TPS."""
        gateway = self.devices[0]
        for tps in self.tps:
            edits = [("put", COLLECTION, f"rec-{k:04d}", self._fields(full=True))
                     for k in range(BASELINE_PER_TPS)]
            self._record(gateway, gateway.node.write(tps, edits), "baseline")

    def _fields(self, *, full: bool = False) -> dict[str, Any]:
        rng = self.rng
        every = {"nama": f"Contoh {rng.randrange(1000)}", "status": rng.choice(STATUSES),
                 "rt": rng.randint(1, 20), "alamat": f"Kampung Uji {rng.randrange(50)}"}
        if full:
            return every
        names = rng.sample(sorted(every), rng.randint(1, 3))
        return {n: every[n] for n in names}

    def _edit(self) -> None:
        up = self.up_devices()
        if not up:
            return
        device = self.rng.choice(up)
        node, rng = device.node, self.rng
        rows = list(node.store.iter_records(COLLECTION))
        live = [r for r in rows if not r.deleted]
        part = device.home if device.index else rng.choice(self.tps)
        roll = rng.random()
        if live and roll < 0.12:
            row = rng.choice(live)
            change, what = node.delete(COLLECTION, row.key, partition=row.partition), "delete"
        elif rows and roll < 0.45:
            row = rng.choice(rows)
            change = node.put(COLLECTION, row.key, self._fields(), partition=row.partition)
            what = "put-seen"
        elif roll < 0.55:
            keys = rng.sample(range(KEYS_PER_TPS), rng.randint(2, 3))
            change = node.write(part, [("put", COLLECTION, f"rec-{k:04d}", self._fields())
                                       for k in keys])
            what = "write"
        else:
            key = f"rec-{rng.randrange(KEYS_PER_TPS):04d}"
            change, what = node.put(COLLECTION, key, self._fields(), partition=part), "put"
        self._record(device, change, what)

    def _record(self, device: SimDevice, change: Change, what: str) -> None:
        self.ledger[(change.author, change.partition, change.seq)] = change
        self.stats.edits += 1
        keys = ",".join(op.key for op in change.ops)
        self.note(f"{device.name} {what} {change.partition.rsplit('/', 2)[-2]}/{keys}"
                  f" seq {change.seq}")

    # -- connections ----------------------------------------------------------------

    def up_devices(self) -> list[SimDevice]:
        return [d for d in self.devices if d.down_until <= self.now_ms]

    def links_of(self, index: int) -> list[Link]:
        return [link for link in self.links.values() if index in link.ends]

    def _connect(self) -> None:
        free = [d for d in self.up_devices() if len(self.links_of(d.index)) <
                MAX_LINKS_PER_DEVICE]
        if len(free) < 2:
            return
        a, b = self.rng.sample(free, 2)
        if any(b.index in link.ends for link in self.links_of(a.index)):
            return
        if self._is_blocked(a.index, b.index):
            self.stats.refused_connects += 1
            self.note(f"{a.name}-{b.name} cannot connect (partition)")
            return
        self._open_link(a, b)

    def _open_link(self, a: SimDevice, b: SimDevice) -> Link:
        pair = SessionPair(Peer(a.node, a.config, now_ms=a.now()),
                           Peer(b.node, b.config, now_ms=b.now()), a.now, b.now)
        link = Link(self._next_link, (a.index, b.index), pair)
        self._next_link += 1
        self.stats.sessions += 2
        self.links[link.ident] = link
        self.note(f"L{link.ident} {a.name}-{b.name} open")
        return link

    def link_name(self, link: Link) -> str:
        a, b = (self.devices[i].name for i in link.ends)
        return f"L{link.ident} {a}-{b}"

    def _piece(self, pending: int) -> int:
        roll = self.rng.random()
        if roll < 0.25:
            return self.rng.randint(1, max(1, min(pending, 8)))
        if roll < 0.6:
            return self.rng.randint(1, max(1, min(pending, 300)))
        return max(1, pending)

    def _busy_links(self) -> list[Link]:
        return [link for link in self.links.values()
                if link.pair.can_deliver(0) or link.pair.can_deliver(1)]

    def _deliver(self) -> None:
        busy = self._busy_links()
        if not busy:
            return
        link = self.rng.choice(busy)
        for _ in range(self.rng.randint(1, 6)):
            self._deliver_piece(link)

    def _deliver_piece(self, link: Link) -> None:
        senders = [s for s in (0, 1) if link.pair.can_deliver(s)]
        if not senders:
            return
        sender = self.rng.choice(senders)
        link.pair.deliver(sender, self._piece(link.pair.pipes[sender].pending))
        if link.pair.duplicates_accepted:
            raise AssertionError(f"{self.link_name(link)}: a session accepted a duplicated frame")
        if link.pair.stalled:
            raise AssertionError(f"{self.link_name(link)}: deadlock, both sessions wait with "
                                 "nothing in flight")

    def _tick(self) -> None:
        roll = self.rng.random()
        if roll < 0.8:
            step = self.rng.randint(1, 3000)
        elif roll < 0.95:
            step = self.rng.randint(5_000, 90_000)
        else:
            step = self.rng.randint(2 * MINUTE_MS, 15 * MINUTE_MS)
        self.now_ms += step
        self._fire_timers()

    def _fire_timers(self) -> None:
        for link in list(self.links.values()):
            fired = link.pair.fire_timers()
            if fired:
                self.stats.timeouts += fired
                self.note(f"{self.link_name(link)} timeout x{fired}")

    def _reap(self) -> None:
        """Close links whose sessions have both ended, and account for them."""
        for ident in [i for i, link in self.links.items() if link.pair.finished]:
            link = self.links.pop(ident)
            outcomes = [self._outcome(link, side) for side in (0, 1)]
            self.note(f"{self.link_name(link)} closed: {outcomes[0]} | {outcomes[1]}")

    def _outcome(self, link: Link, side: int) -> str:
        events = link.pair.sides[side].events
        final = [e for e in events if isinstance(e, SessionDone | SessionFailed)]
        if len(final) != 1:
            raise AssertionError(f"{self.link_name(link)}: side {side} ended with {len(final)} "
                                 "final events, expected exactly 1")
        self.stats.protocol_errors += len(link.pair.sides[side].errors)
        end = final[0]
        self.stats.changes_moved += end.summary.changes_received
        self.stats.receipts_moved += end.summary.receipts_received
        if isinstance(end, SessionFailed):
            self.stats.sessions_failed += 1
            return f"failed {end.stage}{' (peer)' if end.by_peer else ''}"
        self.stats.sessions_done += 1
        self.stats.converged += end.summary.converged
        return (f"done {'=' if end.summary.converged else '~'} "
                f"got {end.summary.changes_received}")

    # -- faults -------------------------------------------------------------------------

    def _fault(self) -> None:
        if self._faults:
            self.injector.inject()

    def _is_blocked(self, i: int, j: int) -> bool:
        return self.blocked.get((min(i, j), max(i, j)), 0) > self.now_ms

    def _expire_partitions(self) -> None:
        for key in [k for k, until in self.blocked.items() if until <= self.now_ms]:
            del self.blocked[key]

    # -- heal ---------------------------------------------------------------------------

    def _heal(self) -> None:
        self._faults = False
        self.blocked.clear()
        for device in self.devices:
            device.down_until = 0
        self.note("heal")
        self._drain()
        for rounds in range(1, self.config.max_heal_rounds + 1):
            self.stats.heal_rounds = rounds
            if self._anti_entropy_round() == 0:
                return
        raise AssertionError(f"still moving changes after {self.config.max_heal_rounds} "
                             "anti-entropy rounds")

    def _drain(self) -> None:
        """Let every open session end: deliver what is in flight, let timers fire."""
        for _ in range(100_000):
            self._reap()
            if not self.links:
                return
            busy = self._busy_links()
            if busy:
                self._deliver_piece(self.rng.choice(busy))
                continue
            waits = [w for link in self.links.values() if (w := link.pair.next_timer()) is not None]
            if not waits:
                raise AssertionError("open links that can neither move bytes nor time out")
            self.now_ms += max(0, min(waits))
            self._fire_timers()
        raise AssertionError("in-flight sessions did not end")

    def _anti_entropy_round(self) -> int:
        n = len(self.devices)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        self.rng.shuffle(pairs)
        moved = 0
        for i, j in pairs:
            ends = (i, j) if self.rng.random() < 0.5 else (j, i)
            link = self._open_link(*(self.devices[k] for k in ends))
            link.pair.pump(self._piece)
            moved += self._check_heal_session(link)
            self.now_ms += self.rng.randint(0, 2000)
        self.note(f"anti-entropy round {self.stats.heal_rounds}: {moved} changes moved")
        return moved

    def _check_heal_session(self, link: Link) -> int:
        if not link.pair.finished:
            raise AssertionError(f"{self.link_name(link)}: heal session did not finish")
        self.stats.heal_sessions += 1
        moved = 0
        for side in (0, 1):
            self._outcome(link, side)
            end = [e for e in link.pair.sides[side].events if isinstance(e, SessionDone)]
            if not end or not end[0].summary.converged:
                raise AssertionError(f"{self.link_name(link)}: heal session side {side} did not "
                                     f"end done and converged: {link.pair.sides[side].events}")
            moved += end[0].summary.changes_received
        del self.links[link.ident]
        self.note(f"{self.link_name(link)} synced, {moved} changes")
        return moved

    # -- checks -------------------------------------------------------------------------

    def _check(self) -> bytes:
        """Assert convergence; return the common canonical state."""
        first = self.devices[0]
        state, vv = first.node.canonical_state(), first.node.version_vector()
        for device in self.devices:
            if device.node.canonical_state() != state:
                raise AssertionError(f"{device.name} state differs from {first.name}'s: "
                                     + state_diff(device.node, first.node))
            if device.node.version_vector() != vv:
                raise AssertionError(f"{device.name} version vector differs from "
                                     f"{first.name}'s")
            check_store(self, device)
        reference = self._replay_reference()
        if reference != state:
            raise AssertionError("state differs from a fresh replay of every written change")
        return state

    def _replay_reference(self) -> bytes:
        """Apply every written change to a fresh node, feeds in a shuffled order."""
        feeds: dict[FeedId, list[Change]] = {}
        for (author, partition, _), change in sorted(self.ledger.items()):
            feeds.setdefault((author, partition), []).append(change)
        order = sorted(feeds)
        self.rng.shuffle(order)
        key = DeviceKey(Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32)))
        node = Node(MemoryStore(), key, lambda: self.now_ms)
        node.receive([c for feed in order for c in feeds[feed]], source="reference")
        return node.canonical_state()


def simulate(config: SimConfig, log: Callable[[str], None] | None = None) -> SimResult:
    """Run one district from ``config.seed``; :class:`SimulationFailure` if it breaks.

    ``log`` receives every trace line as it happens (the CLI's ``-v``).
    """
    return Simulation(config, log).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meshsync.testing.sim --seed N [--devices 10] [--steps 400] [-v]``."""
    parser = argparse.ArgumentParser(prog="python -m meshsync.testing.sim",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0, help="first seed to run")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    parser.add_argument("--devices", type=int, default=SimConfig.devices)
    parser.add_argument("--steps", type=int, default=SimConfig.steps)
    parser.add_argument("--no-faults", dest="faults", action="store_false")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        config = SimConfig(seed, args.devices, args.steps, args.faults)
        try:
            result = simulate(config, print if args.verbose else None)
        except SimulationFailure as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        counts = " ".join(f"{k}={v}" for k, v in result.stats.as_dict().items() if v)
        print(f"seed {seed}: converged, {result.changes} changes, {counts}, "
              f"trace {result.trace_digest[:16]}, state {result.state_digest[:16]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
