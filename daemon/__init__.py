"""Process wiring for the long-running node (installed as ``meshsync.daemon``)."""
