"""``stumpcast bench heartbeats``: heartbeats/s per worker process, and heartbeat -> count delay.

1. A simulated audience (``--viewers`` sessions, each beating every interval across regions
   and CDNs, ``--beats`` heartbeats in all) is produced to a fresh 8-partition topic (deleted
   afterwards, so the real ``viewer.heartbeats`` is not filled with bench data).
2. Baseline: a plain confluent-kafka loop that consumes and decodes every heartbeat (the least
   any worker pays). Then the analytics worker (exact, then hll) from a new consumer group:
   heartbeats/s = beats / (last beat folded - first beat folded), flushes to Redis included.
3. HLL error: the hll run's window totals against the exact run's, same windows.
4. Delay: with the worker following the topic live, a probe session of a probe match beats
   once with ``ts = now``; the delay is from produce to the "N watching" stream showing it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analytics.config import WorkerConfig
from analytics.window import WindowSpec
from analytics.worker import AnalyticsWorker
from runtime.kafka import client_config, granted
from runtime.redisconn import sync_redis
from schemas.access import Grant, Op, Principal, Resource
from schemas.heartbeats import Heartbeat, decode, decode_watching
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import VIEWER_HEARTBEATS, RedisKeys

REGIONS = ("mumbai", "delhi", "chennai", "kolkata", "bengaluru", "hyderabad")
CDNS = ("akamai", "cloudfront", "jio-edge", "fastly")
BITRATES = (400, 800, 1600, 3000, 4500)
STEP = 10_000


@dataclass
class Result:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        print(f"  {name}: {value}", flush=True)
        self.rows.append((name, value))


def audience(match_id: str, viewers: int, beats: int, t0: int) -> Iterator[Heartbeat]:
    rng = random.Random(42)
    phase = [rng.randrange(STEP) for _ in range(min(viewers, 1 << 20))]
    rounds = -(-beats // viewers)
    n = 0
    for r in range(rounds):
        for i in range(viewers):
            if n == beats:
                return
            yield Heartbeat(f"v{i:08d}", match_id, REGIONS[i % 6], CDNS[(i // 6) % 4],
                            BITRATES[(i + r) % 5], 0 if (i + r) % 17 else 300,
                            t0 + r * STEP + phase[i % len(phase)] - 25_000, "android",
                            t0 + r * STEP + phase[i % len(phase)])
            n += 1


def _produce(settings: Settings, topic: str, beats: Iterator[Heartbeat]) -> tuple[int, float]:
    from confluent_kafka import Producer

    p = Producer({**client_config(settings, Principal.ADMIN), "linger.ms": 50,
                  "batch.size": 1_000_000, "compression.type": "lz4",
                  "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000})
    n, started = 0, time.perf_counter()
    for hb in beats:
        while True:
            try:
                p.produce(topic, key=hb.key, value=hb.encode())
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return n, time.perf_counter() - started


def _baseline(settings: Settings, topic: str, total: int) -> float:
    from confluent_kafka import Consumer

    c = Consumer({**client_config(settings, Principal.ADMIN),
                  "group.id": f"bench-base-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    n, first = 0, None
    while n < total:
        msgs = c.consume(20_000, timeout=1.0)
        if msgs and first is None:
            first = time.perf_counter()
        for m in msgs:
            if not m.error():
                decode(m.value() or b"")
                n += 1
    elapsed = time.perf_counter() - (first or time.perf_counter())
    c.close()
    return total / elapsed


def _run_worker(settings: Settings, topic: str, total: int, mode: str,
                records: dict[int, int]) -> tuple[float, float]:
    """(heartbeats/s, CPU seconds of the process per million beats) for one worker."""
    cfg = WorkerConfig(topic=topic, out_topic=f"{topic}.out",
                       group=f"bench-{mode}-{uuid.uuid4().hex[:6]}", idle_ms=1_500)

    def keep(recs: list[Any]) -> None:
        for r in recs:
            if r.region == "*" and r.cdn == "*":
                records[r.window_start_ms] = r.concurrent

    worker = AnalyticsWorker(settings, WindowSpec(step_ms=STEP, mode=mode), cfg, on_records=keep)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    first = last = None
    cpu0 = time.process_time()
    while last is None:
        if not thread.is_alive():
            raise RuntimeError("the analytics worker stopped; see the log above")
        done = worker.metrics.beats._value.get()
        if done and first is None:
            first = time.perf_counter()
        if done >= total:
            last = time.perf_counter()
        time.sleep(0.02)
    cpu = time.process_time() - cpu0
    time.sleep(3.0)  # idle: the last windows close and are published
    worker.stop.set()
    thread.join(30)
    assert first is not None
    return total / (last - first), cpu / (total / 1e6)


def _run_faust(settings: Settings, topic: str, total: int) -> float:
    """Heartbeats/s of the faust engine, in its own process, read from its /metrics."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STUMPCAST_ANALYTICS_METRICS_PORT": str(port)}
    exe = Path(sys.executable).with_name("stumpcast")
    proc = subprocess.Popen([str(exe), "analytics", "worker", "--engine", "faust", "--topic", topic,
                             "--out-topic", f"{topic}.out", "--group",
                             f"bench-faust-{uuid.uuid4().hex[:6]}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def folded() -> float:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            return 0.0
        for line in body.decode().splitlines():
            if line.startswith("stumpcast_analytics_heartbeats_total"):
                return float(line.split()[1])
        return 0.0

    first = None
    deadline = time.monotonic() + 600
    try:
        while (done := folded()) < total:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the faust worker stopped or stalled")
            if done and first is None:
                first = (time.perf_counter(), done)
            time.sleep(0.05)
        assert first is not None
        return (total - first[1]) / (time.perf_counter() - first[0])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _delay(settings: Settings, topic: str, probes: int) -> list[float]:
    """Seconds from producing a heartbeat to the "N watching" stream counting it. Each probe is
    the first viewer of a match of its own, so its count goes from 0 to 1 exactly then."""
    from confluent_kafka import Producer

    r = sync_redis(settings, RedisUser.ADMIN)
    tag = uuid.uuid4().hex[:6]
    cfg = WorkerConfig(topic=topic, out_topic=f"{topic}.out", group=f"bench-live-{tag}")
    worker = AnalyticsWorker(settings, WindowSpec(step_ms=STEP), cfg)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    p = Producer({**client_config(settings, Principal.ADMIN), "linger.ms": 0,
                  "partitioner": "murmur2_random"})
    delays: list[float] = []
    try:
        while not worker.assigned:
            if not thread.is_alive():
                raise RuntimeError("the analytics worker stopped; see the log above")
            time.sleep(0.05)
        time.sleep(1.0)
        for i in range(probes):
            delays.append(_probe(r, p, topic, f"bench-probe-{tag}-{i}"))
            time.sleep(random.uniform(0.1, 0.6))
    finally:
        worker.stop.set()
        thread.join(30)
        for i in range(probes):
            _cleanup(settings, f"bench-probe-{tag}-{i}")
        r.close()
    return delays


def _probe(r: Any, producer: Any, topic: str, match_id: str) -> float:
    now = int(time.time() * 1000)
    hb = Heartbeat(f"{match_id}-viewer", match_id, "mumbai", "akamai", 1600, 0, now - 20_000,
                   "web", now)
    sent = time.perf_counter()
    producer.produce(topic, key=hb.key, value=hb.encode())
    producer.flush(5)
    while _watching(r, match_id) < 1:
        if time.perf_counter() - sent > 10:
            raise RuntimeError("probe not counted within 10 s")
        time.sleep(0.002)
    return time.perf_counter() - sent


def _watching(r: Any, match_id: str) -> int:
    rows = r.xrevrange(RedisKeys.watching(match_id), count=1)
    return decode_watching(rows[0][1][b"u"]).concurrent if rows else 0


def _topics(settings: Settings, create: bool, name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(settings, Principal.ADMIN))
    names = [name, f"{name}.out"]
    if create:
        futs = admin.create_topics([NewTopic(name, VIEWER_HEARTBEATS.partitions, 1),
                                    NewTopic(f"{name}.out", 1, 1)])
    else:
        futs = admin.delete_topics(names)
    for fut in futs.values():
        fut.result(60)


def run_bench(settings: Settings, viewers: int, beats: int, probes: int,
              modes: tuple[str, ...] = ("exact", "hll"), faust: bool = True) -> Result:
    topic = f"stumpcast.bench.heartbeats.{uuid.uuid4().hex[:8]}"
    # The workers run as the analytics principal, on this run's topics and groups.
    grants = [Grant(Principal.ANALYTICS, Resource.TOPIC, topic, op, prefixed=True)
              for op in (Op.READ, Op.WRITE)]
    grants.append(Grant(Principal.ANALYTICS, Resource.GROUP, "bench-", Op.READ, prefixed=True))
    with granted(settings, grants):
        return _run_bench(settings, topic, viewers, beats, probes, modes, faust)


def _run_bench(settings: Settings, topic: str, viewers: int, beats: int, probes: int,
               modes: tuple[str, ...], faust: bool) -> Result:
    from bench.log import median, percentile

    res = Result()
    match_id = f"bench-{uuid.uuid4().hex[:6]}"
    t0 = (int(time.time() * 1000) - 3_600_000) // STEP * STEP
    _topics(settings, True, topic)
    try:
        n, secs = _produce(settings, topic, audience(match_id, viewers, beats, t0))
        res.add("audience", f"{viewers:,} viewers, {n:,} heartbeats "
                f"({n / viewers:.1f} per viewer, {STEP // 1000} s interval)")
        res.add("produce (bench client, lz4)", f"{n / secs:,.0f} heartbeats/s")
        base = _baseline(settings, topic, n)
        res.add("baseline: consume + decode only", f"{base:,.0f} heartbeats/s")
        windows: dict[str, dict[int, int]] = {}
        for mode in modes:
            windows[mode] = {}
            _cleanup(settings, match_id)   # partials of the other mode's run
            rate, cpu = _run_worker(settings, topic, n, mode, windows[mode])
            res.add(f"worker ({mode}): heartbeats/s per process", f"{rate:,.0f}")
            res.add(f"worker ({mode}) / baseline", f"{rate / base:.2f}")
            res.add(f"worker ({mode}): CPU s per million heartbeats", f"{cpu:.2f}")
        if faust:   # ~10x slower: measured over the first 300k beats only
            rate = _run_faust(settings, topic, min(n, 300_000))
            res.add("faust engine: heartbeats/s per process (first 300k)", f"{rate:,.0f}")
            res.add("faust engine / baseline", f"{rate / base:.2f}")
        if "exact" in windows and "hll" in windows:
            errs = [abs(windows["hll"][w] - c) / c for w, c in windows["exact"].items()
                    if c and w in windows["hll"]]
            if errs:
                res.add("HLL error vs exact (window totals)",
                        f"median {100 * median(errs):.2f}%, max {100 * max(errs):.2f}% over "
                        f"{len(errs)} windows, up to {max(windows['exact'].values()):,} sessions")
        _topics(settings, False, topic)
        topic = f"{topic}.live"     # the probes follow a live topic, not a 3M-beat backlog
        _topics(settings, True, topic)
        r = _delay(settings, topic, probes)
        ms = [1000 * d for d in r]
        res.add("heartbeat -> watching count delay",
                f"p50 {median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms, "
                f"max {max(ms):.0f} ms ({len(ms)} probes, 1 s flush)")
    finally:
        _topics(settings, False, topic)
        _cleanup(settings, match_id)
    return res


def _cleanup(settings: Settings, match_id: str) -> None:

    r = sync_redis(settings, RedisUser.ADMIN)
    keys = [RedisKeys.views(match_id), RedisKeys.views(match_id, "hll"),
            RedisKeys.watching(match_id),
            RedisKeys.concurrency(match_id)]
    keys += list(r.scan_iter(match=f"{RedisKeys.prefix}conc:part:*:{match_id}:*", count=1000))
    r.delete(*keys)
    r.close()
