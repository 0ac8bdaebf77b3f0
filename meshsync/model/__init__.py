"""The model layer: the data meshsync signs and merges, with no I/O.

Changes and ops, hybrid logical clocks, canonical msgpack, device identity and
signatures, errors, limits and the JSON forms of field values. Every other layer
builds on this one; it imports nothing from them (docs/architecture.md).
"""
