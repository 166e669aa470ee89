"""``stumpcast chaos``'s pure core: fault names, the plan's bounds, the checks and the
per-fault figures, on plain data (the suite itself runs in tests/stumpcast/test_chaos_stack.py)."""

from __future__ import annotations

import pytest

from bench import chaos_core as core
from bench.chaos_core import ClientCounts, FaultFigures, Plan, PlanError


def test_all_is_every_fault_alone_then_together() -> None:
    assert core.parse_faults("all") == [*core.FAULTS, core.TOGETHER]
    assert core.parse_faults(" redis-kill, together ") == ["redis-kill", "together"]


@pytest.mark.parametrize("text, message", [
    ("", "name at least one"), ("redis-kil", "unknown redis-kil"), (",", "name at least one")])
def test_a_bad_fault_list_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        core.parse_faults(text)


@pytest.mark.parametrize("change, message", [
    ({"clients": 0}, "--clients"), ({"matches": 5}, "at least 6"), ({"window": 1}, "--window"),
    ({"settle": 2}, "--settle"), ({"client_procs": 0}, "--client-procs"),
    ({"speed": -1}, "--speed"), ({"clients": 2, "client_procs": 4}, "at least --client-procs"),
    ({"faults": ()}, "at least one fault")])
def test_the_plan_refuses_what_cannot_run(change: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan(**change).check()  # type: ignore[arg-type]


def test_together_leaves_one_broker_standing() -> None:
    """The broker SIGSTOP is not among the faults at once: with the controller killed too,
    one broker of three could not meet min.insync.replicas 2."""
    assert "kafka-stop" not in core.TOGETHER_FAULTS
    assert set(core.TOGETHER_FAULTS) < set(core.FAULTS)


def test_the_automatic_speed_makes_the_matches_last_the_schedule() -> None:
    plan = Plan(faults=("redis-kill", "together"), window=20)
    speed = plan.replay_speed(10_000)
    assert speed == pytest.approx(10_000 / (1.25 * (10 + 2 * 20)))
    assert Plan(speed=50).replay_speed(10_000) == 50
    assert Plan(faults=("redis-kill",)).replay_speed(1) == 1.0   # never slower than real time


def test_an_event_skipped_by_a_snapshot_is_held_with_the_next_received_seq() -> None:
    rx = {("m", 1): 10.0, ("m", 4): 14.0, ("n", 2): 20.0}
    held = core.covered_at(rx, [("m", 1), ("m", 2), ("m", 3), ("m", 4), ("m", 5), ("n", 1)])
    assert held == {("m", 1): 10.0, ("m", 2): 14.0, ("m", 3): 14.0, ("m", 4): 14.0,
                    ("n", 1): 20.0}   # m 5: after the last received seq, not held


def test_the_worst_delay_is_over_the_window_and_an_unseen_event_is_stuck() -> None:
    sent = {("m", 1): 100.0, ("m", 2): 101.0, ("m", 3): 120.0}
    held = {("m", 1): 100.5, ("m", 2): 104.0}
    assert core.worst_delay(sent, held, 100.0, 110.0) == pytest.approx(3.0)
    assert core.worst_delay(sent, held, 110.0, 130.0) == core.STUCK_S
    assert core.worst_delay(sent, held, 200.0, 210.0) is None


def test_receipts_merge_to_the_first_and_the_last_client() -> None:
    a = {"rx_first": {("m", 1): 1.0}, "rx_last": {("m", 1): 2.0}}
    b = {"rx_first": {("m", 1): 0.5, ("m", 2): 3.0}, "rx_last": {("m", 1): 1.5, ("m", 2): 4.0}}
    first, last = core.merge_receipts([a, b])
    assert first == {("m", 1): 0.5, ("m", 2): 3.0} and last == {("m", 1): 2.0, ("m", 2): 4.0}


def test_cards_that_are_not_the_fold_are_named() -> None:
    want = {"a": {"runs": 1, "wkts": 0}, "b": {"runs": 2}}
    assert core.card_problems("redis", want, dict(want)) == []
    problems = core.card_problems("redis", want, {"a": {"runs": 1, "wkts": 1}})
    assert problems == ["redis: the card of a is not the fold of its events (differs at wkts)",
                        "redis: no card for b"]


def test_notifications_missing_duplicated_or_foreign_are_each_a_problem() -> None:
    want = {"m": ["n1", "n2", "n3"]}
    assert core.note_problems(want, {"m": ["n1", "n2", "n3"]}) == []
    problems = core.note_problems(want, {"m": ["n1", "n1", "n3", "x"]})
    assert problems == ["notifications of m: 1 missing (first n2)",
                        "notifications of m: 1 duplicated (first n1)",
                        "notifications of m: 1 not derived from its events (first x)"]


def test_clients_closed_or_behind_are_counted() -> None:
    finals = {"m": 10, "n": 5}
    assert core.position_problems(finals, [("m", 10, True), ("n", 5, True)]) == []
    assert core.position_problems(finals, [("m", 10, False), ("n", 4, True), ("n", 3, True)]) \
        == ["clients: 1 not connected at the checkpoint",
            "clients: 2 not at the final position (n at 4, final 5)"]


def test_client_counts_are_summed_and_taken_per_fault() -> None:
    reports = [{"recovered": 3, "not_recovered": 1, "drops": 4, "gaps": 0},
               {"recovered": 2, "not_recovered": 0, "drops": 2, "gaps": 1}]
    total = ClientCounts.total(reports)
    assert total == ClientCounts(5, 1, 6, 1)
    assert total.minus(ClientCounts(1, 1, 1, 0)) == ClientCounts(4, 0, 5, 1)


def test_a_row_says_every_figure_and_whether_the_checks_passed() -> None:
    ok = FaultFigures("redis-kill", 8.5, 9.25, ClientCounts(0, 0, 0, 0), 0)
    name, text = ok.row()
    assert name == "redis-kill"
    assert text.startswith("views moving again 8.5 s; largest client staleness 9.2 s")
    assert text.endswith("dead letters 0; checks passed")
    bad = FaultFigures("together", core.STUCK_S, None, ClientCounts(1, 2, 3, 0), 2, ["x"])
    text = bad.row()[1]
    assert "60.0 s (stuck)" in text and "no events in the window" in text
    assert "3 connections dropped, 1 resumed by position, 2 had to take a snapshot" in text
    assert text.endswith("1 CHECKS FAILED")


def test_a_view_or_a_store_behind_the_produced_events_lags() -> None:
    produced = {"m": 10, "n": 4}
    assert core.lag_problems(produced, {"m": 10, "n": 4}, {"m": 10, "n": 4},
                             [("m", 10, True)]) == []
    assert core.lag_problems(produced, {"m": 9, "n": 4}, {"m": 10, "n": 3}, []) == [
        "redis: m at 9, produced 10", "cassandra: n has 3 events, produced 4"]
