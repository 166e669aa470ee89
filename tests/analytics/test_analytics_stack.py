"""A simulated audience through real Kafka, the analytics worker and Redis: every window exact."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from audience_sim import expected, simulate

from analytics.config import WorkerConfig
from analytics.sink import VIEWS_TTL_S
from analytics.window import WindowSpec
from analytics.worker import AnalyticsWorker
from runtime.redisconn import sync_redis
from schemas.heartbeats import decode_concurrency, decode_watching
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from tests.kafka_access import admin_config

pytestmark = pytest.mark.stack
STEP = 10_000


def _produce(settings, topic, beats) -> None:
    from confluent_kafka import Producer

    producer = Producer({**admin_config(settings), "linger.ms": 20,
                         "partitioner": "murmur2_random"})
    for hb in beats:
        producer.produce(topic, key=hb.key, value=hb.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def _read_all(settings, topic, idle: float = 3.0) -> list:
    from confluent_kafka import Consumer

    c = Consumer({**admin_config(settings), "group.id": topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, last = [], time.monotonic()
    while time.monotonic() - last < idle:
        for m in c.consume(1000, timeout=0.5):
            if not m.error():
                out.append(decode_concurrency(m.value()))
                last = time.monotonic()
    c.close()
    return out


def test_simulated_audience_gives_exact_concurrency_for_every_window(kafka_stack, redis_stack,
                                                                     topics):

    settings = kafka_stack
    match_id = f"test-analytics-{uuid.uuid4().hex[:8]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP   # an hour ago, whole windows
    aud = simulate(match_id, 300, t0, span_ms=180_000)
    want = expected(aud.beats, STEP)
    _produce(settings, topics[0], aud.beats)

    got: dict[int, dict] = {}
    config = WorkerConfig(topic=topics[0], out_topic=topics[1], group=f"g-{topics[0]}",
                          idle_ms=2_000)
    worker = AnalyticsWorker(settings, WindowSpec(step_ms=STEP), config,
                             on_records=lambda recs: [got.setdefault(r.window_start_ms, {})
                                                      .__setitem__((r.region, r.cdn), r)
                                                      for r in recs])
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while set(got) != set(want) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.stop.set()
        thread.join(30)

    assert set(got) == set(want)
    for w, groups in want.items():
        assert {g: r.concurrent for g, r in got[w].items()} == {g: v[0] for g, v in groups.items()}
        total = got[w][("*", "*")]
        assert total.beats == groups[("*", "*")][1] and total.complete
    published = _read_all(settings, topics[1])
    assert {(r.window_start_ms, r.region, r.cdn): r.concurrent for r in published} == {
        (w, *g): v[0] for w, groups in want.items() for g, v in groups.items()}

    r = sync_redis(settings, RedisUser.ADMIN)
    try:
        assert r.scard(RedisKeys.views(match_id)) == 300          # views: distinct sessions ever
        assert 0 < r.ttl(RedisKeys.views(match_id)) <= VIEWS_TTL_S   # bounded in time
        entries = r.xrevrange(RedisKeys.watching(match_id), count=1)
        assert entries, "the gateway's watching stream was written"
        watching = decode_watching(entries[0][1][b"u"])
        assert watching.views == 300
        assert watching.concurrent == want[watching.window_start_ms][("*", "*")][0]
        final_total = r.hget(RedisKeys.concurrency(match_id), "*|*")
        newest = max(want)
        assert final_total is not None and int(final_total.split(b",")[0][1:]) == \
            want[newest][("*", "*")][0]
    finally:
        r.delete(RedisKeys.views(match_id), RedisKeys.watching(match_id),
                 RedisKeys.concurrency(match_id))
        r.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_faust_engine_gives_the_same_exact_windows(kafka_stack, redis_stack, topics):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    settings = kafka_stack
    match_id = f"test-faust-{uuid.uuid4().hex[:8]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP
    aud = simulate(match_id, 200, t0, span_ms=120_000, seed=11)
    want = expected(aud.beats, STEP)
    _produce(settings, topics[0], aud.beats)
    exe = Path(sys.executable).with_name("stumpcast")
    env = {**os.environ, "STUMPCAST_ANALYTICS_METRICS_PORT": str(_free_port())}
    proc = subprocess.Popen([str(exe), "analytics", "worker", "--engine", "faust", "--topic",
                             topics[0], "--out-topic", topics[1], "--group", f"g-{topics[0]}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got: dict[tuple[int, str, str], int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(got) < sum(len(g) for g in want.values()) and time.monotonic() < deadline:
            got = {(r.window_start_ms, r.region, r.cdn): r.concurrent
                   for r in _read_all(settings, topics[1], idle=2.0)}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        _drop_keys(settings, match_id)
    assert got == {(w, *g): v[0] for w, groups in want.items() for g, v in groups.items()}


def _drop_keys(settings, match_id: str) -> None:

    r = sync_redis(settings, RedisUser.ADMIN)
    r.delete(RedisKeys.views(match_id), RedisKeys.watching(match_id),
             RedisKeys.concurrency(match_id))
    r.close()


# -- faults: a restart, and a partition slow to deliver -----------------------------------------

N_PARTS = 8  # the heartbeat partitions of the topics fixture (conftest.HEARTBEAT_PARTITIONS)


def _part(session_id: str) -> int:
    """Sessions keyed to partitions (what the gateway's murmur2 partitioner guarantees too)."""
    import zlib

    return zlib.crc32(session_id.encode()) % N_PARTS


def _produce_to(settings, topic, beats) -> None:
    from confluent_kafka import Producer

    producer = Producer({**admin_config(settings), "linger.ms": 20,
                         "enable.idempotence": True})
    for hb in beats:
        producer.produce(topic, key=hb.key, value=hb.encode(), partition=_part(hb.session_id))
        producer.poll(0)
    assert producer.flush(30) == 0


class _Recording(AnalyticsWorker):
    """The production worker; the test keeps its consumer to pause a partition."""

    def __init__(self, *args, **kwargs) -> None:
        self.got: dict[tuple[int, str, str], int] = {}
        super().__init__(*args, on_records=self._record, **kwargs)
        self.consumer = None

    def _record(self, recs) -> None:
        for r in recs:
            self.got[(r.window_start_ms, r.region, r.cdn)] = r.concurrent

    def _clients(self):
        consumer, producer, r = super()._clients()
        self.consumer = consumer
        return consumer, producer, r


def _start(settings, topics, **kw) -> tuple[_Recording, threading.Thread]:
    config = WorkerConfig(topic=topics[0], out_topic=topics[1], group=f"g-{topics[0]}",
                          idle_ms=2_000)
    worker = _Recording(settings, WindowSpec(step_ms=STEP), config, **kw)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _stop(worker, thread) -> None:
    worker.stop.set()
    thread.join(30)
    assert not thread.is_alive()


def _flat(want) -> dict[tuple[int, str, str], int]:
    return {(w, *g): v[0] for w, groups in want.items() for g, v in groups.items()}


def test_windows_stay_exact_when_a_worker_restarts_while_a_partition_is_behind(
        kafka_stack, redis_stack, topics):
    """The cold-start undercount: a partition re-assigned after a restart (or a rebalance) sent an
    empty "no sessions here" partial for every window it had closed before, overwriting the
    sessions it had reported, whenever another partition was still behind on those windows."""
    settings = kafka_stack
    match_id = f"test-analytics-{uuid.uuid4().hex[:8]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP
    aud = simulate(match_id, 300, t0, span_ms=120_000, seed=3)
    want = _flat(expected(aud.beats, STEP))
    late = [hb for hb in aud.beats if _part(hb.session_id) == N_PARTS - 1]
    _produce_to(settings, topics[0], [hb for hb in aud.beats if hb not in late])
    first, thread = _start(settings, topics)
    try:   # every partition but the last read, its windows closed and reported: pending
        _wait(lambda: first.metrics.beats._value.get() == len(aud.beats) - len(late), 60,
              "the first worker to read the first seven partitions")
        time.sleep(2.5)   # flushes close the seven partitions' windows
    finally:
        _stop(first, thread)
    assert not first.got, "no window can be complete while a partition has not reported"
    _produce_to(settings, topics[0], late)
    second, thread = _start(settings, topics)
    try:
        _wait(lambda: set(second.got) == set(want), 60, "every window from the second worker")
    finally:
        _stop(second, thread)
        _drop_keys(settings, match_id)
    assert second.got == want


def test_windows_stay_exact_when_a_partition_is_slow_not_idle(kafka_stack, redis_stack, topics):
    """A partition whose records wait (its fetches paused past the idle timeout) is behind: the
    cached high watermark of its last fetch made it look caught up and idle, so its windows
    closed on half its beats and the other half came late."""
    from confluent_kafka import TopicPartition

    settings = kafka_stack
    match_id = f"test-analytics-{uuid.uuid4().hex[:8]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP
    aud = simulate(match_id, 300, t0, span_ms=120_000, seed=5)
    want = _flat(expected(aud.beats, STEP))
    half = len(aud.beats) // 2
    _produce_to(settings, topics[0], aud.beats[:half])
    worker, thread = _start(settings, topics)
    slow = [TopicPartition(topics[0], N_PARTS - 1)]
    try:
        _wait(lambda: worker.metrics.beats._value.get() == half, 60, "the first half")
        worker.consumer.pause(slow)
        _produce_to(settings, topics[0], aud.beats[half:])
        time.sleep(6)      # three idle timeouts with the last partition's records waiting
        worker.consumer.resume(slow)
        _wait(lambda: set(worker.got) == set(want), 60, "every window")
    finally:
        _stop(worker, thread)
        _drop_keys(settings, match_id)
    assert worker.metrics.late._value.get() == 0
    assert worker.got == want
