"""The analytics worker: a confluent-kafka batch loop around ``Aggregator`` (the shell).

Why not a faust agent: faust wraps each message in Python objects on aiokafka, tens of
microseconds each (infra.md §3: "tens of thousands of events every second" per core, no
benchmark), while the target is >= 50,000 heartbeats/s per process. librdkafka hands over
batches of ``consume(num_messages=...)`` for a few microseconds each; the loop decodes, folds the
batch into the pure core and flushes once a second (Hotstar flushes by time or count; the
emoji pipeline micro-batches every 2 s: industry.md §1c).

Delivery guarantee: offsets are committed after a flush, at the oldest offset an open window
still needs, with the first open window as the commit's metadata. A restarted or rebalanced
worker re-reads from there, rebuilds its open windows exactly and drops beats of windows it had
already reported; the Redis merge (HSET per partition, SADD/PFADD) makes re-reporting harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from analytics.aggregate import Aggregator, FlushPlan
from analytics.config import WorkerConfig
from analytics.metrics import Metrics
from analytics.window import NEVER, WindowSpec
from runtime.kafka import client_config
from schemas.access import Principal
from schemas.heartbeats import ConcurrencyRecord, HeartbeatError, decode
from schemas.settings import Settings

log = logging.getLogger("stumpcast.analytics")


class AnalyticsWorker:
    def __init__(self, settings: Settings, spec: WindowSpec, config: WorkerConfig = WorkerConfig(),
                 metrics: Metrics | None = None,
                 on_records: Callable[[list[ConcurrencyRecord]], None] | None = None) -> None:
        self.settings, self.spec, self.config = settings, spec, config
        self.metrics = metrics or Metrics()
        self.on_records = on_records
        self.agg = Aggregator(spec, config.idle_ms)
        self.stop = threading.Event()
        self.assigned = False
        self.flushes = 0

    def _clients(self) -> tuple[Any, Any, Any]:
        import redis
        from confluent_kafka import Consumer, Producer

        kafka = client_config(self.settings, Principal.ANALYTICS)
        consumer = Consumer({
            **kafka, "group.id": self.config.group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.min.bytes": 1, "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 65536})
        producer = Producer({**kafka, "linger.ms": 20,
                             "partitioner": "murmur2_random", "enable.idempotence": True})
        return consumer, producer, redis.Redis.from_url(self.settings.redis_url)

    def run(self) -> None:
        from analytics.sink import RedisSink

        consumer, producer, r = self._clients()
        parts = _partition_count(consumer, self.config.topic)
        sink = RedisSink(r, self.spec.mode, parts, self.spec.step_ms)
        consumer.subscribe([self.config.topic], on_assign=self._on_assign(consumer),
                           on_revoke=self._on_revoke(consumer, sink, producer))
        last_flush = time.monotonic()
        try:
            while not self.stop.is_set():
                self._consume(consumer)
                if time.monotonic() - last_flush >= self.config.flush_s:
                    last_flush = time.monotonic()
                    self._flush(consumer, sink, producer)
            self._flush(consumer, sink, producer)
        finally:
            consumer.close()
            producer.flush(10)

    def _consume(self, consumer: Any) -> None:
        msgs = consumer.consume(num_messages=self.config.batch, timeout=0.1)
        if not msgs:
            return
        by_part: dict[int, list[Any]] = {}
        rejects = 0
        for msg in msgs:
            if msg.error():
                log.warning("consume error", extra={"error": str(msg.error())})
                continue
            try:
                hb = decode(msg.value())
            except HeartbeatError:
                rejects += 1
                continue
            by_part.setdefault(msg.partition(), []).append((msg.offset(), hb))
        now = _now_ms()
        for p, beats in by_part.items():
            if p in self.agg.cores:
                self.agg.fold(p, beats, now)
        self.metrics.beats.inc(len(msgs) - rejects)
        self.metrics.rejects.inc(rejects)

    def _flush(self, consumer: Any, sink: Any, producer: Any) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        started = time.perf_counter()
        now = _now_ms()
        plan = self.agg.flush(now, self._caught_up(consumer, now))
        if self.flushes % 5 == 0:
            self.agg.watched = sink.watched_sessions()
        self._publish(sink.write(plan, now), producer)
        offsets = [TopicPartition(self.config.topic, p, off, metadata=str(closed))
                   for p, (off, closed) in plan.commits.items() if off > 0]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # e.g. mid-rebalance: the next flush retries
                log.warning("commit failed", extra={"error": str(exc)})
        self._observe(plan, now, time.perf_counter() - started)

    def _caught_up(self, consumer: Any, now: int) -> set[int]:
        """Quiet partitions whose position is the log end as the broker reports it now.

        Not librdkafka's cached high watermark: that is the one of the partition's last fetch
        response, so a partition whose fetches stall keeps an old one and looks caught up while
        records wait for it. A query that fails counts as behind.
        """
        from confluent_kafka import KafkaException, TopicPartition

        quiet = self.agg.idle_candidates(now)
        out: set[int] = set()
        if not quiet:
            return out
        for tp in consumer.position([TopicPartition(self.config.topic, p) for p in quiet]):
            try:
                _low, high = consumer.get_watermark_offsets(tp, timeout=0.5, cached=False)
            except KafkaException as exc:
                log.warning("high watermark query failed", extra={"error": str(exc)})
                break
            if high >= 0 and max(tp.offset, self.agg.cores[tp.partition].next_offset) >= high:
                out.add(tp.partition)
        return out

    def _publish(self, records: list[ConcurrencyRecord], producer: Any) -> None:
        for rec in records:
            producer.produce(self.config.out_topic, key=rec.key, value=rec.encode())
        producer.poll(0)
        if records and self.on_records is not None:
            self.on_records(records)
        self.metrics.windows.inc(sum(1 for r in records if r.region == "*" and r.cdn == "*"))

    def _observe(self, plan: FlushPlan, now: int, seconds: float) -> None:
        self.flushes += 1
        self.metrics.late.inc(plan.late)
        self.metrics.flush_seconds.observe(seconds)
        newest = max((c.max_ts for c in self.agg.cores.values()), default=NEVER)
        if newest != NEVER:
            self.metrics.behind.set((now - newest) / 1000)

    def _on_assign(self, consumer: Any) -> Callable[[Any, list[Any]], None]:
        def on_assign(_c: Any, partitions: list[Any]) -> None:
            committed = consumer.committed(partitions, timeout=10)
            for tp in committed:
                meta = tp.metadata
                closed = int(meta) if meta and meta.lstrip("-").isdigit() else None
                self.agg.assign(tp.partition, closed, _now_ms())
                # Where reading resumes: librdkafka's position stays unknown until a record
                # of the partition is consumed, so a partition with nothing new would never
                # look caught up.
                self.agg.cores[tp.partition].next_offset = max(tp.offset, 0)
            self.assigned = bool(self.agg.cores)
            self.metrics.partitions.set(len(self.agg.cores))
        return on_assign

    def _on_revoke(self, consumer: Any, sink: Any,
                   producer: Any) -> Callable[[Any, list[Any]], None]:
        def on_revoke(_c: Any, partitions: list[Any]) -> None:
            self._flush(consumer, sink, producer)
            for tp in partitions:
                self.agg.revoke(tp.partition)
            self.assigned = bool(self.agg.cores)
            self.metrics.partitions.set(len(self.agg.cores))
        return on_revoke


def _partition_count(consumer: Any, topic: str) -> int:
    """The merge calls a window complete when this many partitions reported: 0 (a topic the
    broker does not know yet) would make every partial look complete."""
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"topic {topic!r} has no partitions on the broker "
                           f"({meta.error if meta is not None else 'unknown topic'})")
    return len(meta.partitions)


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_worker(settings: Settings, mode: str | None = None, engine: str = "confluent",
               config: WorkerConfig = WorkerConfig()) -> int:
    """Run until SIGINT/SIGTERM, with /metrics, /healthz, /readyz on the analytics port."""
    import signal

    from runtime.endpoints import Health, serve_in_thread

    spec = WindowSpec(step_ms=settings.heartbeat_interval * 1000,
                      mode=mode or settings.analytics_mode)
    if engine == "faust":
        from analytics.faust_app import run_faust_worker

        return run_faust_worker(settings, spec, config)
    worker = AnalyticsWorker(settings, spec, config)
    health = Health.of_registry(worker.metrics.registry, ready=lambda: worker.assigned)
    server = serve_in_thread(health, settings.analytics_metrics_port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop.set())
    try:
        worker.run()
    finally:
        server.shutdown()
    return 0
