"""ViewTracker: how far a live match's view is behind the events that arrived (pure)."""

from __future__ import annotations

from stumpcast.ops.views import ViewTracker


def test_an_up_to_date_view_is_not_stale() -> None:
    t = ViewTracker()
    for seq in range(1, 6):
        t.event("m", seq, at=100.0 + seq)
    t.view("m", 5)
    assert t.staleness("m", now=200.0) == 0.0 and t.pending("m") == 0


def test_staleness_is_the_age_of_the_oldest_event_not_taken() -> None:
    t = ViewTracker()
    t.view("m", 3)  # no events seen yet: nothing to compare
    for seq, at in ((3, 10.0), (4, 11.0), (5, 12.0)):
        t.event("m", seq, at)
    t.view("m", 3)
    assert t.pending("m") == 2
    assert t.staleness("m", now=20.0) == 9.0   # seq 4 arrived at 11
    t.view("m", 4)
    assert t.staleness("m", now=20.0) == 8.0   # seq 5 arrived at 12
    t.view("m", 5)
    assert t.staleness("m", now=20.0) == 0.0


def test_a_view_that_moved_before_the_event_was_read_is_fresh() -> None:
    """Positions, not instants: the worker may commit before the exporter reads the event."""
    t = ViewTracker()
    t.event("m", 1, 10.0)
    t.view("m", 1)
    t.event("m", 2, 11.0)
    t.view("m", 2)
    t.event("m", 2, 11.5)  # read again (a second copy): not pending, the view has it
    assert t.pending("m") == 0


def test_a_duplicate_keeps_the_first_arrival() -> None:
    t = ViewTracker()
    t.event("m", 7, 10.0)
    t.event("m", 7, 30.0)
    assert t.pending("m") == 1 and t.staleness("m", now=40.0) == 30.0


def test_a_view_never_goes_back() -> None:
    t = ViewTracker()
    t.event("m", 9, 1.0)
    t.view("m", 9)
    t.view("m", 4)  # an older read
    t.event("m", 6, 2.0)
    assert t.pending("m") == 0


def test_live_matches_are_forgotten_when_quiet_and_up_to_date() -> None:
    t = ViewTracker(live_seconds=60)
    t.event("quiet", 1, 0.0)
    t.view("quiet", 1)
    t.event("stuck", 1, 50.0)  # not applied yet, quiet since
    t.event("busy", 1, 100.0)
    assert sorted(t.live(now=100.0)) == ["busy", "stuck"]
    assert t.staleness("stuck", now=100.0) == 50.0


def test_pending_events_per_match_are_bounded() -> None:
    t = ViewTracker(max_pending=3)
    for seq in range(1, 10):
        t.event("m", seq, float(seq))
    assert t.pending("m") == 3 and t.staleness("m", now=10.0) == 9.0  # the oldest kept


def test_snapshot_keeps_the_stalest_within_the_bound() -> None:
    t = ViewTracker()
    for i in range(5):
        t.event(f"m{i}", 1, float(i))
    t.view("m0", 1)
    t.view("m4", 1)
    rows = t.snapshot(now=10.0, limit=3)
    assert rows == [("m1", 9.0), ("m2", 8.0), ("m3", 7.0)]


def test_an_event_never_applied_is_dropped_after_the_live_window() -> None:
    """Dead-lettered (an unknown match) or its view deleted: a finished match is not stale
    for ever."""
    t = ViewTracker(live_seconds=60)
    t.event("unknown", 1, 0.0)
    assert t.live(now=30.0) == ["unknown"] and t.staleness("unknown", now=30.0) == 30.0
    assert t.live(now=61.0) == [] and t.staleness("unknown", now=61.0) == 0.0
    t.event("down", 1, 0.0)  # a worker down for longer: new events keep it stale
    t.event("down", 2, 55.0)
    assert t.live(now=70.0) == ["down"] and t.staleness("down", now=70.0) == 15.0
