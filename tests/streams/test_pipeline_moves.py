"""Partitions move while the original owners keep running: three real streams workers.

Six real matches are replayed live while a third worker joins, leaves (SIGTERM), joins again
and is SIGKILLed, and the first worker is SIGSTOPped past its session timeout and then
continued (a zombie that still believes it owns its partitions). At the end every Redis card
and every event-store match equals the pure fold, every notification is on
``match.notifications`` exactly once, and no valid event is in the dead-letter topic.

The workers use dynamic group membership (no ``STUMPCAST_STREAMS_INSTANCE_ID``): a static
member neither leaves the group on SIGTERM nor triggers a rebalance when it comes back, so
partitions would move less. The matches are the six shortest-but-one real T20s that still
have 110-160 events (rain-shortened), so six live replays fit in about a minute and a half;
each match id is unique to the run and the six land on six different partitions of the eight.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from schemas.settings import Settings
from schemas.topology import MATCH_EVENTS, MATCH_EVENTS_DLQ, partition_for
from tests.streams.cricsheet_data import DATA_DIR
from tests.streams.test_pipeline_stack import (
    Worker,
    check_results,
    free_port,
    offsets_now,
    read_since,
    replay,
    speed_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# Real matches of 113-158 events (rain-shortened T20s): six live replays in ~80 s.
STEMS = ("829807", "1339617", "1359519", "980989", "1136566", "733993")
PLAY_SECONDS = 80.0
SESSION_TIMEOUT = 10.0  # streams.app: broker_session_timeout


def spread_ids(tag: str, stems: tuple[str, ...]) -> dict[str, Path]:
    """A test-unique match id per file, each on a partition of its own."""
    out: dict[str, Path] = {}
    used: set[int] = set()
    for stem in stems:
        for n in range(1000):
            m = f"mv{tag}{n}-{stem}"
            p = partition_for(m.encode(), MATCH_EVENTS.partitions)
            if p not in used:
                used.add(p)
                out[m] = DATA_DIR / f"{stem}.json"
                break
    assert len(out) == len(stems)
    return out


def dead_letters(settings: Settings, since: dict[int, int], keys: set[str]) -> list[dict]:
    return [orjson.loads(v) for _, v in read_since(settings, MATCH_EVENTS_DLQ.name, since, keys)]


def at(t0: float, seconds: float) -> None:
    """Sleep until ``seconds`` after ``t0``."""
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))


def join(w: Worker) -> None:
    w.start()
    w.wait_ready()


def signal_to(w: Worker, sig: int) -> Callable[[], None]:
    return lambda: w.proc.send_signal(sig) if w.proc else None


def test_partitions_move_under_live_replays(stack: Settings, tmp_path: Path) -> None:
    since = offsets_now(stack)
    tag = uuid.uuid4().hex[:5]
    runs = spread_ids(tag, STEMS)
    dynamic = {"STUMPCAST_STREAMS_INSTANCE_ID": ""}
    w1, w2, w3 = (Worker(f"{n}-{tag}", free_port(), tmp_path / f"{n}.log", env=dynamic)
                  for n in ("w1", "w2", "w3"))
    steps: list[tuple[float, str]] = []
    procs = []
    try:
        for w in (w1, w2):
            w.start()
        for w in (w1, w2):
            w.wait_ready()
        t0 = time.monotonic()
        procs = [replay(p, m, speed_for(p, m, PLAY_SECONDS)) for m, p in runs.items()]

        def step(seconds: float, what: str, action: Callable[[], None]) -> None:
            at(t0, seconds)
            action()
            steps.append((round(time.monotonic() - t0, 1), what))

        step(5, "w3 joins", lambda: join(w3))
        step(15, "w3 leaves (SIGTERM)", w3.stop)
        step(20, "w3 joins again", lambda: join(w3))
        step(30, "w3 SIGKILLed", w3.kill)
        step(34, "w1 SIGSTOPped", signal_to(w1, signal.SIGSTOP))
        # past the session timeout: the group gives w1's partitions to w2 meanwhile
        step(34 + SESSION_TIMEOUT + 5, "w1 continued (a zombie)", signal_to(w1, signal.SIGCONT))
        for proc in procs:
            out, _ = proc.communicate(timeout=240)
            assert proc.returncode == 0, out
        steps.append((round(time.monotonic() - t0, 1), "replays done"))
        check_results(stack, runs, since)
        dead = dead_letters(stack, since[MATCH_EVENTS_DLQ.name], set(runs))
        assert dead == [], f"{len(dead)} valid events dead-lettered: {dead[:3]}"
        for w in (w1, w2):
            assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-3000:]
    finally:
        print("timeline:", steps)
        if w1.proc is not None and w1.proc.poll() is None:
            w1.proc.send_signal(signal.SIGCONT)  # a failed run must not leave it stopped
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for w in (w3, w2, w1):
            w.stop()
