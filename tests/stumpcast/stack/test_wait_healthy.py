"""``wait_healthy`` judges a process it started by its exit code, not by /proc (pure: fakes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stumpcast.stack import control
from stumpcast.stack.errors import ServerDied
from stumpcast.stack.procs import ProcRecord


class FakeServer:
    name = "fake"

    def __init__(self, tmp: Path, healthy_after: int) -> None:
        self.calls, self.healthy_after = 0, healthy_after
        self.log_path = tmp / "fake.log"
        self.log_path.write_text("")
        self.layout: Any = type("L", (), {"pid_record": lambda _self, n: tmp / f"{n}.pid"})()

    def probe(self, timeout: float = 3.0) -> bool:
        self.calls += 1
        return self.calls >= self.healthy_after


def test_a_just_started_process_is_not_called_dead_by_proc(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Right after the fork /proc/<pid>/cmdline can be empty: is_ours says "not ours".
    monkeypatch.setattr(control, "is_ours", lambda record: False)
    monkeypatch.setattr(control.time, "sleep", lambda s: None)
    server = FakeServer(tmp_path, healthy_after=2)
    record = ProcRecord(1, 1, "marker", ["x"])
    control.wait_healthy(server, record, 10.0, exit_code=lambda: None)  # type: ignore[arg-type]
    assert server.calls == 2


def test_an_exit_code_or_a_lost_adopted_process_is_dead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "tail", lambda path, n: "")
    record = ProcRecord(1, 1, "marker", ["x"])
    with pytest.raises(ServerDied, match="exited with code 3"):
        control.wait_healthy(FakeServer(tmp_path, 99), record, 10.0,  # type: ignore[arg-type]
                             exit_code=lambda: 3)
    monkeypatch.setattr(control, "is_ours", lambda record: False)
    with pytest.raises(ServerDied, match="exited while starting"):
        control.wait_healthy(FakeServer(tmp_path, 99), record, 10.0,  # type: ignore[arg-type]
                             exit_code=None)
