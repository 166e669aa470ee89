"""Two analytics workers (real processes) through a Redis outage and a SIGKILL: every window
exact.

The audience is produced live, one heartbeat interval of event time a second. Both replicas
reach Redis through a proxy the test cuts for a few seconds (a Redis restart, as the workers see
it), then one replica is SIGKILLed and the other takes its partitions over. Every final window
published on the output topic must equal the brute-force count of the beats, with no window
published twice with different figures.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from urllib.parse import urlparse

import pytest
from audience_sim import expected, simulate
from faultproxy import FaultProxy
from replicas import Replica

from runtime.redisconn import sync_redis
from schemas.heartbeats import decode_concurrency
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from tests.kafka_access import admin_config

pytestmark = [pytest.mark.stack, pytest.mark.slow]
STEP = 10_000


class Published:
    """Everything on the output topic so far: (window, region, cdn) -> the figures seen."""

    def __init__(self, settings, topic: str) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer({**admin_config(settings),
                                  "group.id": f"read-{topic}", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.seen: dict[tuple[int, str, str], set[int]] = defaultdict(set)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for m in self.consumer.consume(1000, timeout=0.2):
                if not m.error():
                    r = decode_concurrency(m.value() or b"")
                    self.seen[(r.window_start_ms, r.region, r.cdn)].add(r.concurrent)

    def close(self) -> None:
        self.consumer.close()


def _produce(producer, topic: str, beats) -> None:
    for hb in beats:
        producer.produce(topic, key=hb.key, value=hb.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("engine", ["confluent", "faust"])
def test_two_replicas_stay_exact_through_a_redis_outage_and_a_sigkill(
        kafka_stack, redis_stack, topics, tmp_path, engine):
    from confluent_kafka import Producer

    settings = kafka_stack
    match_id = f"test-replicas-{uuid.uuid4().hex[:8]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP
    # Enough sessions that every partition holds some of the match in every window (the
    # documented limit: a worker reports a match only from partitions that saw it).
    aud = simulate(match_id, 1500, t0, span_ms=120_000, seed=21)
    want = {(w, *g): v[0] for w, groups in expected(aud.beats, STEP).items()
            for g, v in groups.items()}
    chunks: dict[int, list] = defaultdict(list)
    for hb in aud.beats:
        chunks[hb.ts_ms // STEP].append(hb)
    order = [chunks[k] for k in sorted(chunks)]

    redis_url = urlparse(settings.redis_url)
    proxy = FaultProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    env = {"STUMPCAST_REDIS_URL": redis_url._replace(
        netloc=f"127.0.0.1:{proxy.port}").geturl()}
    args = ["analytics", "worker", "--engine", engine, "--topic", topics[0],
            "--out-topic", topics[1], "--group", f"g-{topics[0]}"]
    a = Replica("analytics-a", args, "STUMPCAST_ANALYTICS_METRICS_PORT", tmp_path, env)
    b = Replica("analytics-b", args, "STUMPCAST_ANALYTICS_METRICS_PORT", tmp_path, env)
    producer = Producer({**admin_config(settings), "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True})
    published = Published(settings, topics[1])
    try:
        a.wait_ready()
        b.wait_ready()
        for i, beats in enumerate(order):
            if i == 4:
                proxy.cut()                              # Redis gone for both replicas
            _produce(producer, topics[0], beats)
            published.poll(1.0)
            if i == 4:
                _wait(lambda: a.metric("stumpcast_analytics_paused") == 1
                      and b.metric("stumpcast_analytics_paused") == 1, 15,
                      "both replicas to pause on the outage")
            if i == 6:
                proxy.restore()
                _wait(lambda: a.metric("stumpcast_analytics_paused") == 0
                      and b.metric("stumpcast_analytics_paused") == 0, 30,
                      "both replicas to resume after it")
            if i == 8:
                a.kill()                                 # mid-run, windows open
        deadline = time.monotonic() + 60
        while set(published.seen) != set(want) and time.monotonic() < deadline:
            published.poll(1.0)
        assert b.alive(), f"the surviving replica exited: see {b.log}"
        bugs = b.metric('stumpcast_analytics_errors_total{kind="bug"}')
        outages = b.metric('stumpcast_analytics_errors_total{kind="dependency"}')
    finally:
        published.close()
        for r in (a, b):
            r.stop()
        proxy.close()
        _drop_keys(settings, match_id)

    missing = sorted({(k[0] - t0) // STEP for k in set(want) - set(published.seen)})
    assert set(published.seen) == set(want), (
        f"windows {missing} of {sorted({(k[0] - t0) // STEP for k in want})} (steps from the "
        f"first beat) missing; see {a.log}, {b.log}")
    conflicts = {k: v for k, v in published.seen.items() if len(v) > 1}
    assert not conflicts, f"windows published with different figures: {conflicts}"
    assert {k: min(v) for k, v in published.seen.items()} == want
    assert outages > 0 and bugs == 0
    assert "a dependency is down" in b.log_text()


def _drop_keys(settings, match_id: str) -> None:

    r = sync_redis(settings, RedisUser.ADMIN)
    partials = [k for final in (True, False) for k in r.scan_iter(
        RedisKeys.concurrency_partials(match_id, 0, final)[:-1] + "*")]
    r.delete(RedisKeys.views(match_id), RedisKeys.watching(match_id),
             RedisKeys.concurrency(match_id), *partials)
    r.close()
