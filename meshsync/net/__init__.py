"""The I/O edge: trio streams, TLS, timers (and later discovery).

The only package of meshsync that touches trio, ssl, sockets or the clock. It maps
trio and ssl exceptions to meshsync's own at the boundary (:class:`TransportError`).
"""

from meshsync.net.errors import TransportError

__all__ = ["TransportError"]
