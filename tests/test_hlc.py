"""Hybrid logical clock: reserve, observe and the drift rule.

See docs/architecture.md §4 and meshsync.model.hlc.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DAY_MS, START_MS, Device, exchange, sync
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsync.model.change import canonical_put, sign_change
from meshsync.model.errors import ValidationError
from meshsync.model.hlc import COUNTER_MASK, WARN_MARGIN_MS, HybridClock, make, wall_ms
from meshsync.model.identity import short_id
from meshsync.model.limits import MAX_CLOCK_DRIFT_MS

MakeDevice = Callable[..., Device]
CEILING_SLACK = 1  # reserve() may hand out one timestamp past the observed ceiling


def ceiling(now_ms: int) -> int:
    """Greatest timestamp a device at ``now_ms`` may adopt from a peer."""
    return make(now_ms + MAX_CLOCK_DRIFT_MS, COUNTER_MASK)


# -- the clock itself -----------------------------------------------------------------


def test_make_and_wall_ms_round_trip() -> None:
    ts = make(START_MS, 7)
    assert wall_ms(ts) == START_MS
    assert ts & COUNTER_MASK == 7
    assert make(START_MS, COUNTER_MASK) + 1 == make(START_MS + 1)


def test_reserve_follows_the_wall_clock_when_it_moves_forward() -> None:
    clock = HybridClock()
    assert clock.reserve(START_MS) == make(START_MS)
    assert clock.reserve(START_MS + 5) == make(START_MS + 5)
    assert clock.last == make(START_MS + 5)


def test_reserve_is_strictly_increasing_when_the_wall_clock_stalls_or_goes_back() -> None:
    clock = HybridClock()
    first = clock.reserve(START_MS)
    same = clock.reserve(START_MS)
    back = clock.reserve(START_MS - DAY_MS)
    assert first < same < back
    assert wall_ms(back) == START_MS  # the logical counter carries it, not the wall part


def test_reserve_count_gives_consecutive_timestamps() -> None:
    clock = HybridClock()
    first = clock.reserve(START_MS, count=5)
    assert clock.last == first + 4
    assert clock.reserve(START_MS) == first + 5


def test_observe_within_drift_is_followed_and_not_reported() -> None:
    clock = HybridClock(make(START_MS))
    remote = make(START_MS + MAX_CLOCK_DRIFT_MS - 1, 3)
    assert clock.observe(remote, START_MS) == 0
    assert clock.last == remote
    assert clock.reserve(START_MS) == remote + 1  # the next local stamp is after it


def test_observe_of_an_older_timestamp_keeps_the_clock() -> None:
    clock = HybridClock(make(START_MS, 9))
    assert clock.observe(make(START_MS - DAY_MS), START_MS) == 0
    assert clock.last == make(START_MS, 9)


def test_observe_beyond_drift_is_capped_and_reported() -> None:
    clock = HybridClock()
    ahead = clock.observe(make(START_MS + DAY_MS), START_MS)
    assert ahead == DAY_MS
    assert clock.last == ceiling(START_MS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-DAY_MS, DAY_MS),
                          st.integers(-2 * DAY_MS, 2 * DAY_MS), st.integers(1, 5)),
                max_size=40))
def test_local_timestamps_strictly_increase_and_never_pass_the_ceiling(
        steps: list[tuple[bool, int, int, int]]) -> None:
    clock = HybridClock()
    now, last_issued, high_water = START_MS, -1, 0
    for is_local, wall_step, remote_offset, count in steps:
        now += wall_step
        high_water = max(high_water, now)
        if is_local:
            first = clock.reserve(now, count)
            assert first > last_issued
            assert clock.last == first + count - 1
            last_issued = clock.last
        else:
            clock.observe(make(now + remote_offset), now)
        # Only local issuing (one step past it) or real time can push the clock.
        assert clock.last <= max(ceiling(high_water) + 5 * len(steps), last_issued)


# -- the drift rule through a node ------------------------------------------------


def test_change_a_day_ahead_is_applied_reported_and_does_not_drag_the_clock(
        make_device: MakeDevice) -> None:
    fast = make_device("phone-fast", now_ms=START_MS + DAY_MS)
    gw = make_device("laptop-GW")
    ahead = fast.put("voters", "v-1", {"nama": "Contoh"})
    fast.put("voters", "v-2", {"nama": "Contoh"})

    report = exchange(fast, gw)
    assert report.applied == 2
    assert report.refused == []
    assert gw.get("voters", "v-1").fields == {"nama": "Contoh"}  # type: ignore[union-attr]
    assert len(report.clock_warnings) == 1  # one per author per batch, not per change
    warning = report.clock_warnings[0]
    assert short_id(fast.key.public_key) in warning
    assert f"{DAY_MS // 1000} s ahead" in warning

    now = gw.clock.now_ms
    assert gw.hlc.last <= ceiling(now) < ahead.hlc
    local = gw.put("voters", "v-3", {"nama": "Contoh"})
    assert local.hlc == ceiling(now) + CEILING_SLACK
    assert wall_ms(local.hlc) <= now + MAX_CLOCK_DRIFT_MS + 1
    assert gw.store.get_meta("hlc") == gw.hlc.last.to_bytes(8, "big")


def test_a_far_ahead_clock_does_not_drag_the_mesh_through_relays(
        make_device: MakeDevice) -> None:
    fast = make_device("phone-fast", now_ms=START_MS + 30 * DAY_MS)
    b, c = make_device("phone-B"), make_device("phone-C")
    fast.put("voters", "v-1", {"nama": "Contoh"})
    assert exchange(fast, b).clock_warnings
    b.put("voters", "v-2", {"nama": "Contoh"})
    relayed = exchange(b, c)  # C gets fast's change from B, plus B's own
    assert relayed.applied == 2
    about_fast = [w for w in relayed.clock_warnings if short_id(fast.key.public_key) in w]
    assert about_fast == [f"device {short_id(fast.key.public_key)} stamps changes "
                          f"{30 * DAY_MS // 1000} s ahead of this device's clock; "
                          "one of the two clocks is wrong"]
    assert b.hlc.last == ceiling(START_MS) + CEILING_SLACK  # B's one local put
    assert c.hlc.last == ceiling(START_MS)


def test_an_honest_relay_is_not_reported_as_ahead(make_device: MakeDevice) -> None:
    fast = make_device("phone-fast", now_ms=START_MS + 30 * DAY_MS)
    b = make_device("phone-B")
    c = make_device("phone-C", now_ms=START_MS - 1_000)  # 1 s behind B: well within limits
    fast.put("voters", "v-1", {"nama": "Contoh"})
    exchange(fast, b)
    b.put("voters", "v-2", {"nama": "Contoh"})
    relayed = exchange(b, c)
    assert not [w for w in relayed.clock_warnings if short_id(b.key.public_key) in w]


def test_drift_within_limit_moves_the_clock_without_warning(make_device: MakeDevice) -> None:
    near = make_device("phone-near", now_ms=START_MS + 5 * 60_000)
    gw = make_device("laptop-GW")
    change = near.put("voters", "v-1", {"nama": "Contoh"})
    report = exchange(near, gw)
    assert report.clock_warnings == []
    assert gw.hlc.last == change.hlc
    assert gw.put("voters", "v-1", {"status": "ms"}).hlc > change.hlc


def test_warning_counts_the_last_op_of_a_change(make_device: MakeDevice) -> None:
    """A change of n ops uses n timestamps; the last one is what the receiver observes."""
    gw = make_device("laptop-GW")
    author = make_device("phone-A").key
    first = make(START_MS + MAX_CLOCK_DRIFT_MS + WARN_MARGIN_MS, COUNTER_MASK - 1)
    ops = tuple(canonical_put("voters", f"v-{i}", {"n": i}) for i in range(3))
    change = sign_change(author, "mimika/jila/tps-001", 1, b"", first, ops)
    report = gw.receive([change])
    assert report.applied == 1
    assert gw.hlc.last == ceiling(START_MS)  # capped, though the first op was within
    # The first op is at the warning limit, the third is 1 ms past it: it is reported.
    assert len(report.clock_warnings) == 1
    assert "660 s ahead" in report.clock_warnings[0]


def test_clock_survives_restart_when_the_wall_clock_went_back(tmp_path: Path) -> None:
    path = tmp_path / "phone.sqlite"
    first = Device.sqlite("phone-A", path)
    before = first.put("voters", "v-1", {"nama": "Contoh"})
    first.close()
    again = Device.sqlite("phone-A", path, now_ms=START_MS - DAY_MS)  # officer reset the date
    try:
        after = again.put("voters", "v-1", {"status": "ms"})
        assert after.hlc > before.hlc
        assert again.get("voters", "v-1").fields == {  # type: ignore[union-attr]
            "nama": "Contoh", "status": "ms"}
    finally:
        again.close()


def test_clock_rolled_back_with_a_failed_local_edit(make_device: MakeDevice) -> None:
    phone = make_device("phone-A")
    phone.put("voters", "v-1", {"nama": "Contoh"})
    saved = phone.hlc.last

    def refuse(key: str, fields: dict[str, object], *, partial: bool) -> list[tuple[str, str]]:
        return [("nama", "required")] if "nama" not in fields else []

    phone.register_validator("voters", refuse)
    with pytest.raises(ValidationError):
        phone.put("voters", "v-2", {"status": "ms"})
    assert phone.hlc.last == saved
    assert phone.store.get_meta("hlc") == saved.to_bytes(8, "big")


def test_sync_between_skewed_devices_keeps_both_clocks_near_their_own_time(
        make_device: MakeDevice) -> None:
    a = make_device("phone-A", now_ms=START_MS + 2 * DAY_MS)
    b = make_device("phone-B")
    for i in range(3):
        a.put("voters", f"a-{i}", {"n": i})
        b.put("voters", f"b-{i}", {"n": i})
        sync(a, b)
    assert b.hlc.last <= ceiling(b.clock.now_ms) + 3  # B's 3 local puts, one past each
    assert wall_ms(a.hlc.last) == a.clock.now_ms


def test_undone_on_error_restores_the_clock_only_when_the_block_raises() -> None:
    clock = HybridClock()
    with clock.undone_on_error():
        first = clock.reserve(START_MS)
    assert clock.last == first
    with pytest.raises(RuntimeError), clock.undone_on_error():
        clock.reserve(START_MS + DAY_MS, 5)
        raise RuntimeError("rolled back")
    assert clock.last == first
