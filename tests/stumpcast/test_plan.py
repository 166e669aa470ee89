"""``stumpcast plan``: figures parsed from BENCHMARKS.md, assumptions labelled, arithmetic."""

from __future__ import annotations

from stumpcast.plan import figures, parse, plan, plan_text, rung

BENCH = """# Benchmarks

### analytics: heartbeats/s per worker process, heartbeat -> count delay — 2026-11-23 12:00 UTC

| figure | value |
|---|---|
| worker (exact): heartbeats/s per process | 80,000 |

### gateway fanout, 20000 connections, 2 workers — 2026-11-23 12:10 UTC

| figure | value |
|---|---|
| connections held | 20000 of 20000 (connected in 9.0 s) |
| burst hub: updates delivered/s (frames/s) | 300,000 (12,000) in 2.00 s |

### analytics: heartbeats/s per worker process, heartbeat -> count delay — 2026-11-23 13:00 UTC

| figure | value |
|---|---|
| worker (exact): heartbeats/s per process | 100,000 |
"""


def test_newest_measured_figures_win_and_missing_ones_are_assumptions():
    figs = figures(parse(BENCH))
    assert figs["heartbeats/s per analytics worker"].value == 100_000
    assert "13:00" in figs["heartbeats/s per analytics worker"].source
    assert figs["gateway connections per process"].value == 10_000     # per worker
    assert figs["gateway deliveries/s per process"].value == 150_000
    streams = figs["streams events/s per worker"]
    assert not streams.measured and "NOT YET MEASURED" in streams.source


def test_arithmetic_with_three_x_headroom_on_the_ladder():
    figs = figures(parse(BENCH))
    lines = {ln.what: ln.count for ln in plan(50_000_000, 2, figs, headroom=3.0)}
    assert rung(150_000_000) == 150_000_000 and rung(60_000_000) == 75_000_000
    assert lines["design load"] == 150_000_000
    assert lines["gateway processes"] == 15_000           # 150M / 10K conns
    assert lines["analytics workers"] == 150              # 15M beats/s / 100K
    assert lines["viewer.heartbeats partitions"] == 300   # 15M / 50K per partition
    assert round(lines["video egress, Tbps (CDN)"], 1) == 82.5


def test_text_shows_sources_and_the_ladder(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(BENCH)
    text = plan_text(50_000_000, 2, path)
    assert "ladder rung 150,000,000" in text and "Ladder" in text
    assert "Not yet measured here" in text and "streams events/s per worker" in text
    assert "NOT YET MEASURED" in plan_text(1_000_000, 1, tmp_path / "missing.md")


def test_plan_cli_prints_the_fleet(capsys, tmp_path):
    from stumpcast.cli import main

    assert main(["plan", "--viewers", "50000000", "--matches", "2",
                 "--benchmarks", str(tmp_path / "none.md")]) == 0
    out = capsys.readouterr().out
    assert "gateway processes" in out and "Redis shards" in out and "Ladder" in out
