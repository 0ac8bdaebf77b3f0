"""The host layer: the only core files that touch the file system, the clock or threads.

A node's home directory, opening a node on it with the system clock, and the pool
that checks signatures on several cores (docs/architecture.md).
"""
