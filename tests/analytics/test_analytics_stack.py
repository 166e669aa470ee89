"""A simulated audience through real Kafka, the analytics worker and Redis: every window exact."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from audience_sim import expected, simulate

from schemas.heartbeats import decode_concurrency, decode_watching
from schemas.topology import RedisKeys
from streams.analytics.window import WindowSpec
from streams.analytics.worker import AnalyticsWorker, WorkerConfig

pytestmark = pytest.mark.stack
STEP = 10_000


@pytest.fixture
def topics(kafka_stack):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_stack.kafka_bootstrap_str})
    tag = uuid.uuid4().hex[:8]
    names = (f"stumpcast.test.heartbeats.{tag}", f"stumpcast.test.concurrency.{tag}")
    for fut in admin.create_topics([NewTopic(names[0], 8, 1), NewTopic(names[1], 1, 1)]).values():
        fut.result(30)
    yield names
    for fut in admin.delete_topics(list(names)).values():
        fut.result(30)


def _produce(settings, topic, beats) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_str, "linger.ms": 20,
                         "partitioner": "murmur2_random"})
    for hb in beats:
        producer.produce(topic, key=hb.key, value=hb.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def _read_all(settings, topic, idle: float = 3.0) -> list:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap_str, "group.id": topic,
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
    import redis

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

    r = redis.Redis.from_url(settings.redis_url)
    try:
        assert r.scard(RedisKeys.views(match_id)) == 300          # views: distinct sessions ever
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
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    r.delete(RedisKeys.views(match_id), RedisKeys.watching(match_id),
             RedisKeys.concurrency(match_id))
    r.close()
