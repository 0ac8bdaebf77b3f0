"""Two real sessions joined through the real trio driver (``run_session``) over an
in-memory stream pair; either side's stream may be wrapped (a slow link, a logger)."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from meshsync.net.driver import now_ms, run_session
from meshsync.protocol.peer import Peer
from meshsync.protocol.session import SessionConfig
from meshsync.replica.node import Node

Wrap = Callable[[trio.abc.Stream], trio.abc.Stream]


class PassThroughStream(trio.abc.Stream):
    """A stream that forwards everything to ``inner``; override what should differ."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def session(node: Node, config: SessionConfig) -> Peer:
    """A session of ``node`` started now (the driver's clock)."""
    return Peer(node, config, now_ms=now_ms())


def run_pair(a: Peer, b: Peer, *, wrap_a: Wrap = lambda s: s,
             wrap_b: Wrap = lambda s: s, timeout_s: float = 30) -> None:
    """Run ``a`` and ``b`` against each other until both end (TooSlowError after
    ``timeout_s``)."""
    async def main() -> None:
        a_stream, b_stream = trio.testing.memory_stream_pair()
        with trio.fail_after(timeout_s):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_session, wrap_a(a_stream), a, trio.CapacityLimiter(1))
                nursery.start_soon(run_session, wrap_b(b_stream), b, trio.CapacityLimiter(1))
    trio.run(main)
