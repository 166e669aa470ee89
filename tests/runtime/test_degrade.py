"""The degradation controller's core: thresholds, hysteresis, one step down at a time."""

from __future__ import annotations

from runtime.degrade import Controller, ControllerLoop, Thresholds
from schemas.flags import LEVEL_FLAG, OVERRIDE_FLAG, FlagState

CALM = {"loop_lag_ms": 5.0, "queue_bytes": 0.0, "redis_ms": 1.0, "kafka_lag": 0.0, "cpu": 0.2}


def run(core: Controller, samples: list[dict[str, float]], start: float = 0.0) -> list:
    return [(t, d.level) for t, s in enumerate(samples, start=int(start))
            if (d := core.observe(s, float(t))) is not None]


def test_the_level_rises_after_two_samples_over_a_threshold() -> None:
    core = Controller()
    hot = {**CALM, "loop_lag_ms": 80.0}
    assert run(core, [hot, hot, hot]) == [(1, 1)]
    assert core.observe({**CALM, "redis_ms": 2000.0}, 3) is None
    assert core.observe({**CALM, "redis_ms": 2000.0}, 4).level == 3  # straight to level 3


def test_a_signal_between_exit_and_enter_holds_the_level() -> None:
    core = Controller(level=1)
    hovering = {**CALM, "loop_lag_ms": 40.0}  # below 50 (enter), above 30 (0.6 x 50)
    assert run(core, [hovering] * 30) == []
    assert core.level == 1


def test_the_level_falls_one_step_per_calm_period() -> None:
    core = Controller(level=2, down_seconds=5.0, min_dwell=0.0)
    changes = run(core, [CALM] * 14)
    assert changes == [(5, 1), (10, 0)]  # calm from the first sample: no spike before it
    core = Controller(level=2, down_seconds=5.0)  # the default dwell: 10 s at each level
    assert run(core, [CALM] * 20) == [(5, 1), (15, 0)]
    decision = Controller(level=1).observe(CALM, 0.0)
    assert decision is None  # the first calm sample only starts the clock


def test_the_reason_names_the_signal_and_its_threshold() -> None:
    core = Controller(Thresholds(cpu=(0.5, None, None)))
    core.observe({**CALM, "cpu": 0.9}, 0)
    decision = core.observe({**CALM, "cpu": 0.9}, 1)
    assert decision is not None and "cpu 0.9 >= 0.5" in decision.why


class FakeStore:
    def __init__(self, states: dict) -> None:
        self.states = states
        self.written: list = []

    def connect(self) -> None: ...

    def current(self) -> dict:
        return {k: (0, v) for k, v in self.states.items()}

    def write(self, change):  # noqa: ANN001, ANN201
        self.written.append(change)
        self.states[change.flag] = change.state
        return change


def test_the_loop_writes_level_changes_as_audited_flag_changes() -> None:
    hot = {**CALM, "queue_bytes": 1e8}
    store = FakeStore({})
    loop = ControllerLoop(lambda: hot, store, who="ctl@test")
    loop.start()
    loop.step(0.0)
    loop.step(1.0)
    [change] = store.written
    assert (change.flag, change.state.value, change.who) == (LEVEL_FLAG, 2, "ctl@test")
    assert "queue_bytes" in change.why


def test_an_operator_pin_stops_the_controller_writing() -> None:
    store = FakeStore({OVERRIDE_FLAG: FlagState(value=0), LEVEL_FLAG: FlagState(value=0)})
    loop = ControllerLoop(lambda: {**CALM, "cpu": 1.0}, store)
    loop.start()
    assert loop.step(0.0) is None and loop.step(1.0) is None
    assert store.written == []


def test_a_level_raised_again_soon_after_a_step_down_needs_a_longer_calm() -> None:
    core = Controller(down_seconds=5.0, min_dwell=0.0)  # the calm period alone
    hot = {**CALM, "loop_lag_ms": 80.0}
    t = 0.0
    history = []
    for phase in ([hot] * 2, [CALM] * 7, [hot] * 2, [CALM] * 12):
        for s in phase:
            d = core.observe(s, t)
            if d is not None:
                history.append((t, d.level))
            t += 1
    # up at 1; calm from 3 (the median of three samples turns at the second calm one), down
    # 5 s later; up again at 10; calm from 12, and now 10 s are needed
    assert history == [(1.0, 1), (8.0, 0), (10.0, 1), (22.0, 0)]


def test_a_capped_controller_stops_at_its_cap() -> None:
    core = Controller(max_level=1)
    hot = {**CALM, "loop_lag_ms": 5000.0}
    assert run(core, [hot] * 5) == [(1, 1)]


def test_the_level_holds_while_the_p2_load_it_sheds_is_still_offered() -> None:
    """The bench's failure (2026-12-07 03:00): shedding P2 calmed the loop lag, the controller
    stepped down mid-flood and the flood came back. The offered P2 rate (counted before the
    shed) keeps the level; once it falls back to its baseline the level returns to 0 within
    the calm period. The old core stepped down at t=20, with the flood still on."""
    core = Controller(down_seconds=5.0)
    base = {**CALM, "p2_offered": 20_000.0}  # "N watching" to 20,000 clients
    flood = {**base, "loop_lag_ms": 80.0, "p2_offered": 120_000.0}
    shed = {**base, "p2_offered": 120_000.0}  # level 1: the gateway is calm again
    changes = run(core, [base] * 10 + [flood] * 2 + [shed] * 40 + [base] * 15)
    assert changes[0] == (11, 1)
    assert changes[1:] == [(58, 0)]  # flood gone at 52, the median of three at 53, + 5 s
    assert core.level == 0


def test_a_rise_for_another_cause_is_not_held_by_the_usual_p2_load() -> None:
    core = Controller(down_seconds=5.0)
    base = {**CALM, "p2_offered": 20_000.0}
    slow = {**base, "redis_ms": 40.0}
    assert run(core, [base] * 10 + [slow] * 2 + [base] * 20) == [(11, 1), (21, 0)]


def test_a_flood_longer_than_the_window_becomes_the_usual_and_holds_no_more() -> None:
    core = Controller(down_seconds=5.0, offered_window=30)
    base = {**CALM, "p2_offered": 0.0}
    flood = {**base, "loop_lag_ms": 80.0, "p2_offered": 50_000.0}
    shed = {**base, "p2_offered": 50_000.0}
    # the 10th percentile of the last 30 samples is the flood's once 3 or fewer calm ones
    # remain (t = 31); calm from then, down 5 s later
    assert run(core, [base] * 5 + [flood] * 2 + [shed] * 60) == [(6, 1), (36, 0)]


def test_gateway_signals_sum_the_offered_p2_of_fresh_workers(tmp_path) -> None:  # noqa: ANN001
    import os
    import time

    import orjson

    from runtime.degrade import gateway_signals

    now = time.time()
    for i, (lag, offered) in enumerate(((20.0, 1000.0), (70.0, 2500.0), (900.0, 9e9))):
        path = tmp_path / f"worker-{i}.json"
        path.write_bytes(orjson.dumps({"loop_lag_ms": lag, "p2_offered": offered}))
        if i == 2:  # a stale file: a worker that is gone
            os.utime(path, (now - 60, now - 60))
    got = gateway_signals(tmp_path, now)
    assert (got["loop_lag_ms"], got["p2_offered"]) == (70.0, 3500.0)


def test_a_level_raised_before_the_flood_holds_when_the_flood_comes() -> None:
    """The bench at 04:05: noise raised the level before the flood; a baseline taken at the
    rise had too few samples, so nothing held, the level stepped down mid-flood and 312,636 P2
    messages went out. The usual rate is learnt at every level, so the flood holds it."""
    core = Controller(down_seconds=5.0)
    base = {**CALM, "p2_offered": 20_000.0}
    noise = {**base, "loop_lag_ms": 80.0}
    flood = {**base, "p2_offered": 120_000.0}  # at level 1 already: shed, the loop calm
    changes = run(core, [noise] * 2 + [base] * 7 + [flood] * 30 + [base] * 10)
    assert changes == [(1, 1), (45, 0)]  # flood gone at 39, the median of three at 40, + 5 s


def test_a_stray_low_sample_does_not_set_the_usual_rate() -> None:
    core = Controller(down_seconds=5.0)
    base = {**CALM, "p2_offered": 20_000.0}
    flood = {**base, "loop_lag_ms": 80.0, "p2_offered": 120_000.0}
    shed = {**base, "p2_offered": 120_000.0}
    samples = [{**base, "p2_offered": 0.0}] + [base] * 12 + [flood] * 2 + [shed] * 10
    assert run(core, samples + [base] * 8) == [(14, 1), (31, 0)]
    assert core.offered_holds({"p2_offered": 30_000.0}) is False  # level 0
