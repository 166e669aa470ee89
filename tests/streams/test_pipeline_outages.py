"""Redis, then Cassandra, then Kafka stopped during a live replay, on the real stack.

Each server is stopped with ``stumpcast stack down --only <server>`` for ``OUTAGE`` seconds and
started again, while three real matches are replayed live into a running streams worker.
While Redis or Kafka is down the views stop (the worker commits nothing: events out of the
worker do not move); while Cassandra is down they go on and the events wait in the store
backlog. Nothing is dead-lettered, and afterwards every card, every stored match and every
notification equals the pure fold of the matches (``check_results``).

``OUTAGE`` is the issue's 30 s, three times longer than everything that bounds a retry in the
worker (the group session timeout, 10 s; the retry backoff cap of the engine, the store
backlog and the relay, 5 s); the replays last long enough to span the three outages.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from schemas.settings import Settings
from schemas.topology import MATCH_EVENTS_DLQ
from tests.streams.cricsheet_data import DATA_DIR
from tests.streams.test_pipeline_moves import dead_letters
from tests.streams.test_pipeline_stack import (
    STUMPCAST,
    Worker,
    check_results,
    free_port,
    offsets_now,
    replay,
    speed_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

OUTAGE = 30.0
STEMS = ("1136566", "733993", "1304082")  # real matches of 153-160 events
PLAY_SECONDS = 190.0


def stack(*args: str) -> None:
    out = subprocess.run([str(STUMPCAST), "stack", *args], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr


def metric(w: Worker, name: str, labels: str = "") -> float:
    """The sum of a metric's samples (whose labels contain ``labels``) on the worker."""
    total = 0.0
    for line in w.metrics().splitlines():
        m = re.match(rf"{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and labels in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def events_out(w: Worker) -> float:
    return metric(w, "stumpcast_streams_events_out_total")


def wait_for(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def outage(server: str, w: Worker, views_stop: bool, log: list[str]) -> None:
    before = events_out(w)
    stack("down", "--only", server)
    started = time.monotonic()
    time.sleep(3)  # what was in flight settles
    frozen = events_out(w)
    time.sleep(OUTAGE - 3)
    during = events_out(w)
    if views_stop:
        assert during == frozen, f"{server} down, yet the worker committed views"
    else:
        assert during > frozen, f"{server} down, and the views stopped"
    stack("up", "--only", server)
    wait_for(f"the views to move after {server} is back", lambda: events_out(w) > during, 90)
    log.append(f"{server}: down {time.monotonic() - started:.0f} s, events out "
               f"{before:.0f} -> {frozen:.0f} -> {during:.0f} -> moving again")


def test_views_stop_and_catch_up_across_outages(stack_settings: Settings,
                                                tmp_path: Path) -> None:
    since = offsets_now(stack_settings)
    tag = uuid.uuid4().hex[:6]
    runs = {f"out{tag}-{s}": DATA_DIR / f"{s}.json" for s in STEMS}
    w = Worker(f"out-{tag}", free_port(), tmp_path / "worker.log")
    log: list[str] = []
    procs = []
    try:
        w.start()
        w.wait_ready()
        procs = [replay(p, m, speed_for(p, m, PLAY_SECONDS)) for m, p in runs.items()]
        wait_for("the first views", lambda: events_out(w) > 10, timeout=150)
        outage("redis", w, views_stop=True, log=log)
        outage("cassandra", w, views_stop=False, log=log)
        assert metric(w, "stumpcast_streams_unavailable_total") > 0
        outage("kafka", w, views_stop=True, log=log)
        for proc in procs:
            out, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, out
        check_results(stack_settings, runs, since)
        dead = dead_letters(stack_settings, since[MATCH_EVENTS_DLQ.name], set(runs))
        assert dead == [], f"{len(dead)} events dead-lettered: {dead[:3]}"
        assert metric(w, "stumpcast_streams_rejects_total") == 0
    finally:
        print("outages:", log)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        stack("up")  # whatever happened, the next tests get the whole stack
        w.stop()


@pytest.fixture
def stack_settings(stack: Settings) -> Settings:
    return stack
