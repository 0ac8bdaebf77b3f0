"""The replica layer: one device's copy of the data and the rules that keep it true.

The node (local edits, the receive pipeline, the CRDT merge, quarantine), custody
receipts, record views, progress and the share policy. Sans-I/O: the clock is an
argument and storage is a :class:`meshsync.store.Store` (docs/architecture.md).
"""
