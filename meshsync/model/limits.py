"""Size and clock limits. Every limit a peer or a bundle can hit is defined here.

Sizes are in bytes, times in milliseconds.
"""

from __future__ import annotations

#: Largest encoded ``fields`` map of one put op (one record version). A record
#: larger than this is refused locally with :class:`~meshsync.model.errors.TooLargeError`
#: and on receipt with a ``size`` refusal. 8 MiB leaves room for a few document
#: photos while keeping one change well inside a phone's memory.
MAX_RECORD_BYTES = 8 * 1024 * 1024

#: Largest canonical encoding of one change (all its ops plus header).
MAX_CHANGE_BYTES = MAX_RECORD_BYTES + 256 * 1024

#: Largest single msgpack item a bundle reader buffers; bounds import memory.
MAX_ITEM_BYTES = MAX_CHANGE_BYTES + 64 * 1024

#: Longest collection name, record key, field name and partition path (characters).
MAX_NAME_CHARS = 256

#: Most ops in one change.
MAX_OPS_PER_CHANGE = 100_000

#: How far (ms) a received HLC may run ahead of the receiver's wall clock before
#: the receiver stops following it. See :mod:`meshsync.model.hlc` for the rule.
MAX_CLOCK_DRIFT_MS = 10 * 60 * 1000
