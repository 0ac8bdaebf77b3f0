"""The ``meshsync`` command line (installed as ``meshsync.cli``). No protocol logic here."""
