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

Faults (STYLE.md 13-14, ``runtime.faults``):

* The windows belong to the assignment: a revoked partition's windows are dropped (after a last
  flush), an assigned one is rebuilt from its committed offset and metadata.
* A flush is carried out in stages (Redis, then the records delivered to Kafka, then the commit)
  and kept until every stage is done. A dependency that is down pauses consumption and the
  flush is retried with backoff; nothing is committed meanwhile, so a worker killed during an
  outage loses nothing. The consumer still polls while paused, so it keeps its group membership.
* A beat that makes the fold raise (a bug: it decoded) and a partial that Redis refuses (a
  script error) are logged with their traceback, counted in ``stumpcast_analytics_errors`` and
  skipped; the worker carries on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from analytics.aggregate import Aggregator, FlushPlan
from analytics.config import WorkerConfig
from analytics.metrics import Metrics
from analytics.pending import DependencyDown, PendingFlush, final_windows, report_skipped
from analytics.window import NEVER, WindowSpec
from runtime.faults import Backoff, Fault, Throttle, classify, report
from runtime.kafka import client_config
from schemas.access import Principal
from schemas.heartbeats import ConcurrencyRecord, HeartbeatError, decode
from schemas.settings import Settings

log = logging.getLogger("stumpcast.analytics")
T = TypeVar("T")


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
        self.pending: PendingFlush | None = None
        self.generation = 0
        self.paused = False
        self.backoff = Backoff(base_s=0.2, cap_s=5.0)
        self.throttle = Throttle()
        self.undelivered: list[ConcurrencyRecord] = []

    def _clients(self) -> tuple[Any, Any, Any]:
        from confluent_kafka import Consumer, Producer

        from runtime.redisconn import sync_redis
        from schemas.store_access import RedisUser

        kafka = client_config(self.settings, Principal.ANALYTICS)
        consumer = Consumer({
            **kafka, "group.id": self.config.group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.min.bytes": 1, "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 65536,
            # A killed replica's partitions move to the others within 10 s (librdkafka: 45 s).
            "session.timeout.ms": self.config.session_timeout_ms,
            "heartbeat.interval.ms": max(100, self.config.session_timeout_ms // 10)})
        producer = Producer({**kafka, "linger.ms": 20,
                             "partitioner": "murmur2_random", "enable.idempotence": True})
        # Timeouts: a server that hangs must fail the flush (and be retried), not block it.
        r = sync_redis(self.settings, RedisUser.ANALYTICS, socket_timeout=5,
                       socket_connect_timeout=2)
        return consumer, producer, r

    def run(self) -> None:
        from analytics.sink import RedisSink

        consumer, producer, r = self._clients()
        parts = self._until_up("topic metadata",
                               lambda: _partition_count(consumer, self.config.topic))
        if parts is None:
            return
        sink = RedisSink(r, self.spec.mode, parts, self.spec.step_ms)
        consumer.subscribe([self.config.topic], on_assign=self._on_assign(consumer),
                           on_revoke=self._on_revoke(consumer, sink, producer))
        next_flush = time.monotonic() + self.config.flush_s
        try:
            while not self.stop.is_set():
                self._consume(consumer)
                if time.monotonic() >= next_flush:
                    ok = self._flush(consumer, sink, producer)
                    delay = self.config.flush_s if ok else self.backoff.next(random.random())
                    next_flush = time.monotonic() + delay
            # A last try: what it cannot finish is re-read by the partitions' next owner.
            self._flush(consumer, sink, producer)
        finally:
            consumer.close()
            producer.flush(10)

    def _until_up(self, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, retried with backoff while a dependency is down (None if stopped)."""
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                return fn()
            except Exception as exc:
                if classify(exc) is Fault.BUG:
                    raise
                report(log, what, exc, self.throttle)
                self.stop.wait(backoff.next(random.random()))
        return None

    # -- intake ---------------------------------------------------------------------------
    def _consume(self, consumer: Any) -> None:
        msgs = consumer.consume(num_messages=self.config.batch, timeout=0.1)
        if not msgs:
            return
        by_part: dict[int, list[Any]] = {}
        rejects = errors = 0
        for msg in msgs:
            if msg.error():
                errors += 1
                if self.throttle.allow("consume", time.monotonic()):
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
            if p in self.agg.cores:   # else not ours (any more): its owner reads it
                self._fold(p, beats, now)
        self.metrics.beats.inc(len(msgs) - rejects - errors)
        self.metrics.rejects.inc(rejects)

    def _fold(self, p: int, beats: list[Any], now: int) -> None:
        for offset, exc in self.agg.fold_each(p, beats, now):
            self.metrics.errors.labels("bug").inc()
            report(log, "fold (beat skipped)", exc, self.throttle, partition=p, offset=offset)

    # -- flush ----------------------------------------------------------------------------
    def _flush(self, consumer: Any, sink: Any, producer: Any) -> bool:
        """Plan a flush (unless one is pending) and carry it out; False if it must be retried."""
        started = time.perf_counter()
        if self.pending is None:
            now = _now_ms()
            if self.flushes % 5 == 0:
                try:
                    self.agg.watched = sink.watched_sessions()
                except Exception as exc:
                    return self._failed(consumer, exc)
            plan = self.agg.flush(now, self._caught_up(consumer, now))
            self.pending = PendingFlush(plan, now, self.generation)
        pending = self.pending
        try:
            self._carry_out(pending, consumer, sink, producer)
        except Exception as exc:
            return self._failed(consumer, exc)
        self.pending = None
        self.backoff.reset()
        if self.paused:
            self.paused = False
            consumer.resume(consumer.assignment())
            self.metrics.paused.set(0)
            log.warning("flush carried out again; consuming")
        self._observe(pending.plan, pending.now_ms, time.perf_counter() - started)
        return True

    def _carry_out(self, p: PendingFlush, consumer: Any, sink: Any, producer: Any) -> None:
        if p.records is None:
            records = sink.write(p.plan, p.now_ms)
            report_skipped(sink.skipped, self.metrics, log, self.throttle)
            p.written(records)
            if records and self.on_records is not None:
                self.on_records(records)
            self.metrics.windows.inc(final_windows(records))
        self._deliver(p, producer)
        self._commit(p, consumer)

    def _deliver(self, p: PendingFlush, producer: Any) -> None:
        """The window records on Kafka before the commit that makes them unrepeatable."""
        p.unsent += self.undelivered
        self.undelivered = []
        while p.unsent:
            rec = p.unsent[0]
            producer.produce(self.config.out_topic, key=rec.key, value=rec.encode(),
                             on_delivery=self._delivery_report(rec))   # BufferError: full
            p.unsent.pop(0)
        left = producer.flush(self.config.deliver_timeout_s)
        if left or self.undelivered:
            raise DependencyDown(f"analytics.concurrency: {left} records not yet delivered, "
                                 f"{len(self.undelivered)} failed (retried)")

    def _delivery_report(self, rec: ConcurrencyRecord) -> Callable[[Any, Any], None]:
        def report_(err: Any, _msg: Any) -> None:
            if err is not None:
                self.undelivered.append(rec)
        return report_

    def _commit(self, p: PendingFlush, consumer: Any) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        if p.generation != self.generation:
            return   # the partitions moved since: their new owner commits its own
        offsets = [TopicPartition(self.config.topic, part, off, metadata=str(closed))
                   for part, (off, closed) in p.plan.commits.items() if off > 0]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if classify(exc) is Fault.DEPENDENCY:
                raise
            # e.g. a rebalance under way: the next flush commits again, further on
            log.warning("commit failed", extra={"error": str(exc)})

    def _failed(self, consumer: Any, exc: Exception) -> bool:
        """A flush stage failed: pause consumption and keep the flush for the retry. A bug is
        retried too (and logged with its traceback): dropping the flush would lose windows."""
        kind = Fault.DEPENDENCY if isinstance(exc, DependencyDown) else classify(exc)
        self.metrics.errors.labels(str(kind)).inc()
        report(log, "flush", exc, self.throttle)
        self.paused = True
        consumer.pause(consumer.assignment())   # again: a rebalance may have added partitions
        self.metrics.paused.set(1)
        return False

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
        try:
            positions = consumer.position([TopicPartition(self.config.topic, p) for p in quiet])
        except KafkaException as exc:
            log.warning("position query failed", extra={"error": str(exc)})
            return out
        for tp in positions:
            try:
                _low, high = consumer.get_watermark_offsets(tp, timeout=0.5, cached=False)
            except KafkaException as exc:
                log.warning("high watermark query failed", extra={"error": str(exc)})
                break
            if high >= 0 and max(tp.offset, self.agg.cores[tp.partition].next_offset) >= high:
                out.add(tp.partition)
        return out

    def _observe(self, plan: FlushPlan, now: int, seconds: float) -> None:
        self.flushes += 1
        self.metrics.late.inc(plan.late)
        self.metrics.flush_seconds.observe(seconds)
        newest = max((c.max_ts for c in self.agg.cores.values()), default=NEVER)
        if newest != NEVER:
            self.metrics.behind.set((now - newest) / 1000)

    # -- the assignment -------------------------------------------------------------------
    def _on_assign(self, consumer: Any) -> Callable[[Any, list[Any]], None]:
        def on_assign(_c: Any, partitions: list[Any]) -> None:
            committed = self._until_up("committed offsets",
                                       lambda: consumer.committed(partitions, timeout=10))
            self.generation += 1
            for tp in committed or []:
                meta = tp.metadata
                closed = int(meta) if meta and meta.lstrip("-").isdigit() else None
                self.agg.assign(tp.partition, closed, _now_ms())
                # Where reading resumes: librdkafka's position stays unknown until a record
                # of the partition is consumed, so a partition with nothing new would never
                # look caught up.
                self.agg.cores[tp.partition].next_offset = max(tp.offset, 0)
            if self.paused and partitions:   # a flush is still waiting for a dependency
                consumer.assign(partitions)
                consumer.pause(partitions)
            self.assigned = bool(self.agg.cores)
            self.metrics.partitions.set(len(self.agg.cores))
        return on_assign

    def _on_revoke(self, consumer: Any, sink: Any,
                   producer: Any) -> Callable[[Any, list[Any]], None]:
        def on_revoke(_c: Any, partitions: list[Any]) -> None:
            # One try to report and commit what is closed; if a dependency is down, the new
            # owner re-reads from the last commit and rebuilds the same windows.
            self._flush(consumer, sink, producer)
            self.generation += 1
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
    health = Health.of_registry(worker.metrics.registry,
                                ready=lambda: worker.assigned and not worker.paused)
    server = serve_in_thread(health, settings.analytics_metrics_port,
                             settings.analytics_metrics_host)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop.set())
    try:
        worker.run()
    finally:
        server.shutdown()
    return 0
