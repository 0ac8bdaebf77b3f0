"""meshsync: offline peer-to-peer sync of signed CRDT records.

The core (this package, except :mod:`meshsync.net`) is sans-I/O: it takes bytes,
local edits and the time, and returns bytes, events and deadlines. Start with
:func:`meshsync.host.local.open_node` for a node on a home directory.
"""

__version__ = "0.1.0"
