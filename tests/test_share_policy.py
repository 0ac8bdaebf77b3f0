"""The share policy (meshsync.replica.share): default share scopes and the count of
changes a peer still lacks, partitions matched by whole path segments."""

from __future__ import annotations

import pytest

from meshsync.replica.share import default_share, pending_changes

A, B = b"a" * 32, b"b" * 32
TPS_1 = "mimika/jila/diloa/tps-1"
TPS_10 = "mimika/jila/diloa/tps-10"


def test_a_phone_shares_its_district_others_their_scope() -> None:
    assert default_share("pantarlih", TPS_1) == "mimika/jila"
    assert default_share("gateway", "mimika/jila") == "mimika/jila"
    assert default_share("central", "") == ""
    assert default_share("pantarlih", "") == ""


def test_pending_counts_a_peers_partition_by_whole_segments() -> None:
    mine = {(A, TPS_1): 5, (A, TPS_10): 7}
    # The peer holds B's feed of tps-1 only: it lacks A's 5 changes there, never tps-10's.
    assert pending_changes(mine, {(B, TPS_1): 2}) == 5


def test_pending_counts_feeds_below_a_held_partition_and_what_the_peer_lacks() -> None:
    mine = {(A, TPS_1): 5, (B, "mimika/jila/diloa"): 3}
    theirs = {(A, TPS_1): 2, (B, "mimika/jila"): 1}
    assert pending_changes(mine, theirs) == 3 + 3
    assert pending_changes(mine, {}) == 0
    assert pending_changes({(A, TPS_1): 2}, {(A, TPS_1): 9}) == 0


def test_a_share_must_contain_the_devices_own_partition() -> None:
    """A phone of tps-0044 with ``share = ".../tps-001"`` would never send its own
    edits; the share is refused by name."""
    from meshsync.model.errors import UsageError
    from meshsync.replica.share import check_share

    assert check_share("mimika/jila", TPS_1) == "mimika/jila"
    assert check_share("", TPS_1) == ""
    assert check_share(TPS_1, TPS_1) == TPS_1
    for bad in ("mimika/jila/diloa/tps-001", "papua", TPS_1 + "0"):
        with pytest.raises(UsageError, match=r"share = .*does not contain this device's own"):
            check_share(bad, TPS_1)
    with pytest.raises(UsageError, match=r"config\.toml: share"):
        check_share("mimika", "", source="config.toml: share")
