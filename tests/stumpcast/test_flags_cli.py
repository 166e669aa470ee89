"""`stumpcast flags`: bad input answered clearly; changes and level changes on Kafka with their
audit fields, shown by `flags history` (real Kafka and Redis)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from runtime.degrade import Controller, ControllerLoop
from schemas.flags import LEVEL_FLAG, FlagChange, FlagState


def flags(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stumpcast", "flags", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "says"), [
    (["set", "nope", "off", "--why", "x"], "unknown flag 'nope'"),
    (["set", "watching", "--why", "x"], "nothing to set"),
    (["set", "watching", "--region", "north", "--why", "x"], "expected NAME=on or NAME=off"),
    (["set", "degrade.level", "--value", "7", "--why", "x"], "needs a value 0-3"),
    (["rollout", "markers", "150", "--why", "x"], "a percentage, 0 to 100"),
    (["set", "watching", "off", "--why", " "], "a reason is required"),
])
def test_bad_input_is_refused_with_a_clear_error(args: list[str], says: str,
                                                 redis_stack: Any) -> None:
    out = flags(*args)
    assert out.returncode == 2 and says in out.stderr, out.stderr


def test_a_change_without_a_reason_is_refused_by_the_parser() -> None:
    out = flags("set", "watching", "off")
    assert out.returncode == 2 and "--why" in out.stderr


@pytest.mark.stack
def test_flag_and_level_changes_are_on_kafka_with_their_audit_fields(
        kafka_stack: Any, redis_stack: Any, settings: Any) -> None:
    from runtime.flags import FlagStore

    region = f"t-{uuid.uuid4().hex[:8]}"
    why = f"cli test {region}"
    out = flags("set", "notes_p2", "--region", f"{region}=off", "--who", "tester@ci",
                "--why", why)
    assert out.returncode == 0, out.stderr
    store = FlagStore(settings)
    before = store.current().get(LEVEL_FLAG)
    try:
        # the controller's level changes, written as it writes them (hot, then calm)
        hot = {"loop_lag_ms": 500.0}
        signals = iter([hot, hot] + [{"loop_lag_ms": 0.0}] * 3)
        loop = ControllerLoop(lambda: next(signals), store,
                              Controller(down_seconds=0.0, min_dwell=0.0),
                              who=f"controller-{region}")
        loop.start()
        loop.core.level = 0
        decisions = [loop.step(float(t)) for t in range(5)]
        assert [d.level for d in decisions if d] == [2, 1]
    finally:
        # leave the level as the stack had it (0 when it was never set), even on a failure:
        # a level left at 2 sheds P2 in every later test on this stack
        store.write(FlagChange(LEVEL_FLAG, before[1] if before else FlagState(value=0),
                               "tester@ci", int(time.time() * 1000), f"{why}: restore"))
        store.close()
    out = flags("history", "--json", "--limit", "0")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    mine = [r for r in rows if r["flag"] == "notes_p2" and r["why"] == why]
    assert mine and mine[-1]["who"] == "tester@ci" and mine[-1]["state"]["regions"][region] is False
    assert mine[-1]["version"] >= 0 and mine[-1]["when_ms"] > 0
    levels = [r for r in rows if r["flag"] == LEVEL_FLAG and r["who"] == f"controller-{region}"]
    assert [r["state"]["value"] for r in levels] == [2, 1]
    assert all("loop_lag_ms" in r["why"] or "below" in r["why"] for r in levels)
    text = flags("history", "notes_p2").stdout
    assert why in text and "tester@ci" in text
    flags("set", "notes_p2", "--region", f"{region}=on", "--who", "tester@ci",
          "--why", f"{why}: cleanup")
