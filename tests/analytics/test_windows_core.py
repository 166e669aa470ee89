"""The window core and the aggregator without Kafka or Redis: exact counts for every window."""

from __future__ import annotations

import zlib

import orjson
import pytest
from audience_sim import expected, simulate

from analytics.aggregate import Aggregator, merge
from analytics.hll import HyperLogLog
from analytics.window import PartitionWindows, WindowSpec
from schemas.heartbeats import (
    Heartbeat,
    HeartbeatError,
    decode,
    make_heartbeat,
)

T0 = 1_790_000_000_000  # a multiple of 10 s
STEP = 10_000


def _partition(session: str, n: int) -> int:
    return zlib.crc32(session.encode()) % n


def _run(beats: list[Heartbeat], n_parts: int, spec: WindowSpec, batch: int = 500):
    """Fold in batches per partition (offsets count per partition), flush after each batch,
    then idle; collect the finals merged across partitions."""
    agg = Aggregator(spec, idle_ms=3_000)
    for p in range(n_parts):
        agg.assign(p, None, now_ms=0)
    offsets = [0] * n_parts
    finals: dict[int, dict[int, dict]] = {}
    live = []
    for i in range(0, len(beats), batch):
        by_part: dict[int, list] = {}
        for hb in beats[i:i + batch]:
            p = _partition(hb.session_id, n_parts)
            by_part.setdefault(p, []).append((offsets[p], hb))
            offsets[p] += 1
        for p, items in by_part.items():
            agg.fold(p, items, now_ms=i)
        plan = agg.flush(now_ms=i)
        _collect(plan, finals)
        live += plan.live
    _collect(agg.flush(now_ms=10**15), finals)  # idle long enough: everything closes
    return finals, live, agg


def _collect(plan, finals) -> None:
    for partial in plan.finals:
        for p, part in partial.parts.items():
            assert p not in finals.setdefault(partial.start_ms, {}), "partition reported twice"
            finals[partial.start_ms][p] = part


def _as_tuples(merged):
    return {g: (s.sessions, s.beats, s.bitrate_sum, s.buffering_ms) for g, s in merged.items()}


@pytest.mark.parametrize("n_parts", [1, 4, 8])
def test_every_window_is_exact_across_partitions(n_parts):
    aud = simulate("m1", 400, T0, span_ms=300_000)
    want = expected(aud.beats, STEP)
    finals, _, agg = _run(aud.beats, n_parts, WindowSpec(step_ms=STEP))
    got = {w: _as_tuples(merge(parts.values())) for w, parts in finals.items()}
    assert got == want
    assert all(len(parts) == n_parts for parts in finals.values())  # every partition reported
    assert agg.late == 0


def test_live_counter_is_the_newest_two_intervals():
    aud = simulate("m2", 200, T0, span_ms=120_000)
    want = expected(aud.beats, STEP)
    _, live, _ = _run(aud.beats, 4, WindowSpec(step_ms=STEP), batch=50)
    assert live
    last = live[-1]
    total = merge(last.parts.values())[("*", "*")].sessions
    assert total == want[last.start_ms][("*", "*")][0]
    for partial in live:  # a live count never exceeds the final count of its window
        count = merge(partial.parts.values()).get(("*", "*"))
        assert count is None or count.sessions <= want[partial.start_ms][("*", "*")][0]


def test_late_beats_are_dropped_and_counted():
    core = PartitionWindows(WindowSpec(step_ms=STEP, lateness_ms=0))
    hb = lambda s, ts: Heartbeat(s, "m", "r", "c", 1, 0, ts, "web", ts)  # noqa: E731
    core.fold([(0, hb("a", T0)), (1, hb("b", T0 + 35_000))])
    for k in core.closable():
        core.evict_through(k)
    assert core.fold([(2, hb("c", T0 + 1_000))]) == 1
    assert core.late == 1


def test_restart_from_the_commit_point_rebuilds_open_windows():
    aud = simulate("m3", 300, T0, span_ms=200_000)
    spec = WindowSpec(step_ms=STEP)
    beats = [(i, b) for i, b in enumerate(aud.beats)]
    whole = PartitionWindows(spec)
    whole.fold(beats)
    first = PartitionWindows(spec)
    first.fold(beats[: len(beats) // 2])
    for k in first.closable():
        first.evict_through(k)
    resumed = PartitionWindows(spec, closed_before=first.closed_before)
    resumed.fold(beats[first.commit_offset():])
    k = resumed.closable()[0]
    assert resumed.stats(k, "m3") == whole.stats(k, "m3")


def test_hll_mode_is_within_three_standard_errors():
    aud = simulate("m4", 3000, T0, span_ms=60_000)
    want = expected(aud.beats, STEP)
    finals, _, _ = _run(aud.beats, 2, WindowSpec(step_ms=STEP, mode="hll"))
    sigma = HyperLogLog.standard_error()
    for w, parts in finals.items():
        got = merge(parts.values())[("*", "*")].sessions
        exact = want[w][("*", "*")][0]
        assert abs(got - exact) <= max(2, 3 * sigma * exact), (w, got, exact)


def test_hll_large_count_error():
    sketch = HyperLogLog()
    for i in range(200_000):
        sketch.add(f"session-{i}")
    assert abs(sketch.count() - 200_000) / 200_000 < 3 * HyperLogLog.standard_error()


def test_heartbeat_round_trip_and_strictness():
    raw = make_heartbeat("s1", "m1", ts_ms=T0, playhead_ms=T0 - 20_000, region="delhi",
                         cdn="akamai", bitrate_kbps=1600, buffering_ms=120, device="android")
    hb = decode(raw)
    assert hb.session_id == "s1" and hb.bitrate_kbps == 1600 and hb.key == b"s1"
    doc = orjson.loads(raw)
    for bad in ({**doc, "v": 2}, {**doc, "extra": 1}, {**doc, "bitrate_kbps": "1600"},
                {**doc, "buffering_ms": -1}, {**doc, "region": "*"}, {**doc, "session_id": ""},
                {k: v for k, v in doc.items() if k != "device"}):
        with pytest.raises(HeartbeatError):
            decode(orjson.dumps(bad))
    with pytest.raises(HeartbeatError):
        decode(b"not json")


def test_playheads_of_watched_sessions_only():
    agg = Aggregator(WindowSpec(step_ms=STEP))
    agg.assign(0, None, now_ms=0)
    agg.watched = frozenset({"s1"})
    hb = lambda s, ph: Heartbeat(s, "m", "r", "c", 1, 0, ph, "web", T0)  # noqa: E731
    agg.fold(0, [(0, hb("s1", 500)), (1, hb("s2", 700)), (2, hb("s1", 400))], now_ms=0)
    assert agg.flush(now_ms=0).playheads == {"s1": 500}
    assert agg.flush(now_ms=0).playheads == {}


def test_a_partition_starved_by_a_backlog_is_behind_not_idle():
    agg = Aggregator(WindowSpec(step_ms=STEP), idle_ms=1_000)
    for p in (0, 1):
        agg.assign(p, None, now_ms=0)
    hb = lambda s, ts: Heartbeat(s, "m", "r", "c", 1, 0, ts, "web", ts)  # noqa: E731
    agg.fold(0, [(0, hb("a", T0)), (1, hb("b", T0 + 5_000))], now_ms=0)
    agg.fold(1, [(0, hb("c", T0 + 1_000))], now_ms=0)
    first = agg.flush(now_ms=10**15, caught_up={0})     # p1 has more to read: not idle
    assert first.finals and all(1 not in f.parts for f in first.finals)
    agg.fold(1, [(1, hb("d", T0 + 2_000))], now_ms=10**15)
    assert agg.late == 0
    parts: dict[int, list] = {}
    for f in first.finals + agg.flush(now_ms=2 * 10**15).finals:
        parts.setdefault(f.start_ms, []).extend(f.parts.values())
    totals = {w: merge(ps)[("*", "*")].sessions for w, ps in parts.items()}
    assert totals[T0] == 4 and totals[T0 - STEP] == 4


@pytest.mark.parametrize("mode", ["exact", "hll"])
def test_views_get_every_session_and_exact_mode_sends_arrivals_only(mode):
    aud = simulate("m5", 300, T0, span_ms=200_000)
    agg = Aggregator(WindowSpec(step_ms=STEP, mode=mode))
    for p in range(4):
        agg.assign(p, None, now_ms=0)
    sent: list[str] = []
    offsets = [0] * 4
    for i in range(0, len(aud.beats), 100):
        for hb in aud.beats[i:i + 100]:
            p = _partition(hb.session_id, 4)
            agg.fold(p, [(offsets[p], hb)], now_ms=0)
            offsets[p] += 1
        sent += [s for sessions in agg.flush(now_ms=0).sessions.values() for s in sessions]
    assert set(sent) == {hb.session_id for hb in aud.beats}
    if mode == "exact":   # sessions beat in consecutive buckets: sent about once each
        assert len(sent) < 1.5 * len(set(sent)) < len(aud.beats)


def test_idle_time_counts_from_when_a_partition_was_last_known_behind():
    """A partition quiet for the idle time but not known to be caught up (its position or log
    end unknown, or records waiting) is busy: once caught up it must stay quiet idle_ms more."""
    agg = Aggregator(WindowSpec(step_ms=STEP), idle_ms=1_000)
    base = 10**15     # wall time far past the beats: once idle, every window closes
    agg.assign(0, None, now_ms=base)
    hb = Heartbeat("a", "m", "r", "c", 1, 0, T0, "web", T0)
    agg.fold(0, [(0, hb)], now_ms=base)
    assert agg.idle_candidates(base + 5_000) == [0]
    assert not agg.flush(now_ms=base + 5_000, caught_up=set()).finals  # behind: not idle
    assert agg.idle_candidates(base + 5_500) == []
    assert not agg.flush(now_ms=base + 5_500, caught_up={0}).finals  # caught up 0.5 s ago
    finals = agg.flush(now_ms=base + 6_000, caught_up={0}).finals  # quiet 1 s since behind
    assert [f.start_ms for f in finals] == [T0 - STEP, T0]


def test_a_beat_that_makes_the_fold_raise_is_skipped_and_the_rest_counted():
    """A bug on one beat (here a timestamp of the wrong type that got past decoding) costs that
    beat only: the beats before and after it in the batch are folded, the windows exact."""
    aud = simulate("m9", 200, T0, span_ms=120_000, seed=9)
    good = aud.beats
    bad = tuple.__new__(Heartbeat, (*good[100][:8], "not a number"))
    beats = [(i, hb) for i, hb in enumerate(good[:100] + [bad] + good[100:])]
    agg = Aggregator(WindowSpec(step_ms=STEP), idle_ms=3_000)
    agg.assign(0, None, now_ms=0)
    failed = agg.fold_each(0, beats[:150], now_ms=0) + agg.fold_each(0, beats[150:], now_ms=0)
    assert [(offset, type(exc)) for offset, exc in failed] == [(100, TypeError)]
    assert agg.cores[0].next_offset == len(beats)
    finals: dict[int, dict[int, dict]] = {}
    _collect(agg.flush(now_ms=10**15), finals)
    got = {w: _as_tuples(merge(parts.values())) for w, parts in finals.items()}
    assert got == expected(good, STEP)
