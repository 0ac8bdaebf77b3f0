"""The protocol layer: how replicas exchange changes, as bytes in and bytes out.

Framing and the compact wire form, the sync session state machine with its typed
messages, transition table and events (it touches no store), the session's owner
that answers those events on a node (:mod:`meshsync.protocol.peer`), and the bundle
file format. Sans-I/O (docs/protocol.md).
"""
