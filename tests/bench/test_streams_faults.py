"""The fault benchmark's figure (pure): how long a view stood still with an event waiting."""

import pytest

from bench.streams_faults import STUCK_S, Live, _summary


def _live(sent: dict, seen: dict) -> Live:
    live = Live(settings=None, matches={}, speed=1.0)  # type: ignore[arg-type]
    live.sent, live.seen = sent, seen
    return live


def test_staleness_is_the_longest_wait_of_an_event_produced_in_the_window():
    # m1's view stops at t=10: events produced at 10.2 and 10.5 show at 13.0, then normal.
    sent = {("m1", 1): 9.9, ("m1", 2): 10.2, ("m1", 3): 10.5, ("m1", 4): 14.0,
            ("m2", 1): 10.1}
    seen = {("m1", 1): 9.91, ("m1", 2): 13.0, ("m1", 3): 13.0, ("m1", 4): 14.01,
            ("m2", 1): 10.11}
    live = _live(sent, seen)
    assert live.staleness("m1", 10.0, 20.0) == 13.0 - 10.2
    assert live.staleness("m2", 10.0, 20.0) == pytest.approx(0.01)
    assert live.staleness("m1", 20.0, 30.0) is None          # nothing produced then
    assert live.staleness("m1", 0.0, 10.0) == pytest.approx(0.01)   # before the stop


def test_an_event_never_seen_counts_as_stuck():
    live = _live({("m", 1): 5.0, ("m", 2): 6.0}, {("m", 1): 5.01})
    assert live.staleness("m", 0.0, 10.0) == STUCK_S
    assert "1 still stale after 30 s" in _summary([STUCK_S, 0.5], 1, "every match")
    assert _summary([], 0, "x").startswith("no samples")
