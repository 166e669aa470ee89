"""The media bench's pure parts: glass-to-glass samples after start-up, spoiler windows, and
its arguments (a clear usage error, never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.media_glass import settle, spoiler_windows

ROOT = Path(__file__).resolve().parents[2]


def test_settle_drops_the_players_start_up() -> None:
    glass = [[1_000_000.0 + i * 500, 4000.0 if i < 20 else 1500.0] for i in range(60)]
    assert settle(glass) == [1.5] * 40
    assert settle([]) == []


def test_spoiler_window_is_display_minus_push_for_balls_after_the_start() -> None:
    glass = [[1_000_000.0, 1500.0]]
    pushed = {"early": 1005.0, "a": 1020.0, "b": 1030.0, "never": 1040.0}
    shown = {"early": 1_012_000.0, "a": 1_021_600.0, "b": 1_031_500.0}
    assert spoiler_windows(pushed, shown, glass) == pytest.approx([1.6, 1.5])


@pytest.mark.parametrize("argv", [["--live-seconds", "5"], ["--regular-seconds", "x"],
                                  ["--edge-seconds", "-1"]])
def test_bad_durations_are_usage_errors(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "stumpcast", "bench", "media", *argv],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "seconds" in out.stderr and "Traceback" not in out.stderr
