"""``stumpcast chaos`` answers bad arguments, and a missing multi-node stack, with one clear
line and exit code 2, before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from stumpcast.cli import main


@pytest.fixture(autouse=True)
def single_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("STUMPCAST_REDIS_CLUSTER", "STUMPCAST_KAFKA_BOOTSTRAP",
                "STUMPCAST_CASSANDRA_HOSTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STUMPCAST_RUN_DIR", str(tmp_path / "run"))


@pytest.mark.parametrize("args, message", [
    (["--faults", "redis-kil"], "unknown redis-kil"),
    (["--clients", "0"], "--clients must be at least 1"),
    (["--matches", "3"], "--matches must be at least 6"),
    (["--window", "1"], "--window must be at least 5 s"),
])
def test_bad_arguments_are_refused_with_a_clear_line(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stumpcast chaos: ") and message in err


def test_a_number_that_is_not_one_is_refused_by_argparse(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["chaos", "--clients", "many"])
    assert exit_.value.code == 2 and "invalid int value" in capsys.readouterr().err


def test_without_the_multi_node_stack_it_says_how_to_start_one(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["chaos", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert "needs the multi-node stack" in err and "stack up --nodes 3" in err
    assert f"source {tmp_path / 'run'}/nodes3.env" in err


def test_a_multi_node_stack_that_is_not_running_is_named(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STUMPCAST_REDIS_CLUSTER", "127.0.0.1:1,127.0.0.1:2")
    monkeypatch.setenv("STUMPCAST_KAFKA_BOOTSTRAP", "127.0.0.1:1,127.0.0.2:1,127.0.0.3:1")
    monkeypatch.setenv("STUMPCAST_CASSANDRA_HOSTS", "127.0.0.1,127.0.0.2,127.0.0.3")
    assert main(["chaos", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert "not running from" in err and "kafka-1" in err and "redis-" in err


def test_help_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["chaos", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines at hyphens
    for name in ("kafka-kill", "cassandra-kill", "redis-kill", "streams-kill", "gateway-kill",
                 "kafka-stop", "streams-stop", "together", "Cricsheet"):
        assert name in out


def test_more_clients_than_haproxy_can_hold_is_refused() -> None:
    from bench.chaos_core import ChaosError
    from stumpcast.stack.chaos_faults import check_capacity

    with pytest.raises(ChaosError, match="HAProxy processes can proxy about .* connections"):
        check_capacity(10_000_000)
    check_capacity(300)
