"""Error classification, backoff and the guarded loops, on the client libraries' own errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from runtime.faults import Backoff, Fault, Throttle, classify, periodic, report, supervised


def _dependency_errors() -> list[BaseException]:
    import aiokafka.errors as ak
    import cassandra
    import cassandra.cluster
    import redis.exceptions as rx
    from confluent_kafka import KafkaError, KafkaException

    return [
        rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        rx.TimeoutError("Timeout reading from socket"),
        rx.BusyLoadingError("Redis is loading the dataset in memory"),
        rx.ReadOnlyError("You can't write against a read only replica."),
        ak.KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]"),
        ak.RequestTimedOutError(),
        ak.NodeNotReadyError(),
        ak.CommitFailedError("rebalanced"),
        ak.RebalanceInProgressError(),
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
        KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)),
        KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS)),
        cassandra.cluster.NoHostAvailable("no host", {}),
        cassandra.OperationTimedOut(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        BufferError("Local: Queue full"),
    ]


def _bugs() -> list[BaseException]:
    import redis.exceptions as rx
    from confluent_kafka import KafkaError, KafkaException

    return [
        rx.ResponseError("ERR Error running script: attempt to compare nil with number"),
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
        KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)),
        ValueError("bad"), KeyError("x"), TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'id'"),
    ]


@pytest.mark.parametrize("exc", _dependency_errors(), ids=lambda e: type(e).__name__)
def test_a_server_that_is_down_is_a_dependency_fault(exc):
    assert classify(exc) is Fault.DEPENDENCY


@pytest.mark.parametrize("exc", _bugs(), ids=lambda e: type(e).__name__)
def test_everything_else_is_a_bug(exc):
    assert classify(exc) is Fault.BUG


def test_backoff_grows_to_its_cap_with_jitter_and_resets():
    b = Backoff(base_s=0.2, cap_s=2.0)
    lows = [b.next(0.0) for _ in range(6)]
    assert lows == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    b.reset()
    highs = [b.next(0.999999) for _ in range(6)]
    assert highs == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0], rel=1e-5)


def test_throttle_lets_one_line_a_key_through_per_interval_and_counts_the_rest():
    t = Throttle(interval_s=10)
    assert t.allow("a", 100.0) and t.allow("b", 100.0)
    assert not t.allow("a", 105.0) and not t.allow("a", 109.9)
    assert t.take_suppressed("a") == 2 and t.take_suppressed("a") == 0
    assert t.allow("a", 110.0)


def test_report_logs_a_bug_with_its_traceback_and_a_dependency_without(caplog):
    import redis.exceptions as rx

    log = logging.getLogger("test.faults")
    throttle = Throttle()
    try:
        raise TypeError("boom")
    except TypeError as exc:
        with caplog.at_level(logging.WARNING, logger="test.faults"):
            assert report(log, "fold", exc, throttle) is Fault.BUG
            assert report(log, "fold", exc, throttle) is Fault.BUG   # throttled: no 2nd line
            assert report(log, "flush", rx.ConnectionError("refused"), throttle) \
                is Fault.DEPENDENCY
    bug, dep = caplog.records
    assert bug.levelno == logging.ERROR and bug.exc_info and "boom" in caplog.text
    assert dep.levelno == logging.WARNING and not dep.exc_info


async def test_a_periodic_step_that_fails_does_not_end_its_timer():
    calls: list[int] = []
    faults: list[Fault] = []

    async def step() -> None:
        calls.append(len(calls))
        if len(calls) in (2, 3):
            raise ConnectionRefusedError(111, "refused") if len(calls) == 2 else KeyError("x")

    task = asyncio.create_task(periodic("tick", 0.01, step, logging.getLogger("test.faults"),
                                        on_fault=faults.append))
    while len(calls) < 6:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert faults == [Fault.DEPENDENCY, Fault.BUG]


async def test_a_supervised_loop_is_started_again_after_it_raises():
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionResetError(104, "reset")

    await asyncio.wait_for(supervised("intake", run, logging.getLogger("test.faults")), 10)
    assert len(runs) == 3


async def test_a_cancel_lost_inside_a_step_still_ends_the_timer_and_the_supervisor():
    """A stop's one cancel, swallowed below (Python 3.11's ``wait_for`` inside every redis-py
    command, runtime.eventloop), ended neither loop: the notifier's and the analytics worker's
    timers ran on after their stop."""
    log = logging.getLogger("test")
    rounds = {"periodic": 0, "supervised": 0}

    async def lossy(name: str) -> None:
        rounds[name] += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:   # a library that loses the first one ...
            if rounds[name] > 1:
                raise
            if name == "supervised":
                raise RuntimeError("... and then fails") from None

    for name, loop in (("periodic", periodic("timer", 0.01, lambda: lossy("periodic"), log)),
                       ("supervised", supervised("run", lambda: lossy("supervised"), log))):
        task = asyncio.create_task(loop)
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait({task}, timeout=2)   # not wait_for: it would wait for ever too
        ran_on = not task.done()
        task.cancel()                           # a second cancel gets through, whatever
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not ran_on and rounds[name] == 1, f"{name} ran on after its cancel"
