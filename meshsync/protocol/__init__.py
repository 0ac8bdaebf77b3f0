"""The protocol layer: how replicas exchange changes, as bytes in and bytes out.

Framing and the compact wire form, the sync session state machine with its typed
messages and events, and the bundle file format. Sans-I/O (docs/protocol.md).
"""
