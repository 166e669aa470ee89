"""The analytics topology as a faust app: a thin adapter over the same pure ``Aggregator``.

``build_app(settings, spec, config)`` makes everything (no import-time app, aiokafka ``kafka://``
transport). One agent takes batches (``take_events``, up to ``config.batch`` or 0.5 s) and
folds them; a 1 s timer flushes to Redis (``RedisSink`` in a thread, so the loop is not blocked)
and sends complete windows to ``analytics.concurrency``. Acks are manual: a message is acked
once no open window needs it (``PartitionWindows.commit_offset``), so faust's committed offset
never passes a beat a restart would need.

Difference from the confluent-kafka worker (``analytics.worker``, the default): faust
commits no metadata, so a worker that takes a partition over (a restart, a rebalance) does not
know which windows it had already reported: it rebuilds them from the committed offset and may
close one again on part of its beats. ``merge.lua`` keeps a partition's first final partial of
a window (first write wins), so the published figures stay those of the first close. Use this
engine where faust is the house runtime, the default one for throughput (BENCHMARKS.md).

Faults, as in the default engine (``analytics.worker``): windows belong to the assignment (built
for each partition assigned, dropped on revoke; events fetched under an older assignment,
still in the agent's buffer, are skipped by their generation); the flush timer never ends on
an error: a failed flush is kept (``analytics.pending``) and retried with backoff while the
agent stops taking events; a beat that makes the fold raise is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

from analytics.aggregate import Aggregator
from analytics.config import WorkerConfig, topic_partitions
from analytics.metrics import Metrics
from analytics.pending import DependencyDown, PendingFlush, final_windows, report_skipped
from analytics.window import WindowSpec
from runtime.faults import Backoff, Fault, Throttle, classify, report
from runtime.kafka import faust_config
from schemas.access import Principal
from schemas.heartbeats import HeartbeatError, decode
from schemas.settings import Settings

log = logging.getLogger("stumpcast.analytics")


def app_config(settings: Settings) -> dict[str, Any]:
    return dict(
        **faust_config(settings, Principal.ANALYTICS),
        autodiscover=False, web_enabled=False, topic_disable_leader=True,
        table_standby_replicas=0, store="memory://",
        topic_replication_factor=settings.kafka_replication_factor,
        consumer_auto_offset_reset="earliest", broker_commit_interval=1.0,
        broker_max_poll_records=5000, stream_buffer_maxsize=20000, producer_linger=0.02,
        # A rebalance must not wait for every event to be acked: ours are acked only when
        # their windows close, which needs more events, so waiting deadlocked the rebalance.
        # A revoked partition's unacked events are re-read by its new owner.
        stream_wait_empty=False,
        # A killed worker's partitions move within 10 s (faust: 60 s).
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
    )


class _State:
    def __init__(self, spec: WindowSpec, config: WorkerConfig) -> None:
        self.agg = Aggregator(spec, config.idle_ms)
        self.pending: dict[int, deque[Any]] = {}
        self.metrics = Metrics()
        self.throttle = Throttle()
        self.flowing = asyncio.Event()   # cleared while a flush waits for a dependency
        self.flowing.set()

    def assign(self, partitions: list[int], now_ms: int) -> None:
        for p in partitions:
            self.agg.assign(p, None, now_ms)
            self.pending[p] = deque()
        self.metrics.partitions.set(len(self.agg.cores))

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.agg.revoke(p)
            self.pending.pop(p, None)
        self.metrics.partitions.set(len(self.agg.cores))

    def fold(self, events: list[Any], generation: int | None) -> None:
        now = int(time.time() * 1000)
        by_part: dict[int, list[tuple[int, Any]]] = {}
        for ev in events:
            msg = ev.message
            if msg.partition not in self.agg.cores or msg.generation_id != generation:
                continue   # fetched for an assignment that has ended: its new owner reads it
            self.pending[msg.partition].append(ev)
            try:
                by_part.setdefault(msg.partition, []).append((msg.offset, decode(ev.value)))
            except HeartbeatError:
                self.metrics.rejects.inc()
        for p, beats in by_part.items():
            for offset, exc in self.agg.fold_each(p, beats, now):
                self.metrics.errors.labels("bug").inc()
                report(log, "fold (beat skipped)", exc, self.throttle, partition=p,
                       offset=offset)
            self.metrics.beats.inc(len(beats))

    def ackable(self, commits: dict[int, tuple[int, int]]) -> list[Any]:
        out = []
        for p, (offset, _closed) in commits.items():
            q = self.pending.get(p)
            while q and q[0].message.offset < offset:
                out.append(q.popleft())
        return out


class _Flusher:
    """The flush timer's body: plan once, carry out in stages, retry with backoff."""

    def __init__(self, app: Any, settings: Settings, spec: WindowSpec, config: WorkerConfig,
                 state: _State, out: Any, stream: dict[str, Any]) -> None:
        self.app, self.settings, self.spec, self.config = app, settings, spec, config
        self.state, self.out, self.stream = state, out, stream
        self.sink: Any = None
        self.pending: PendingFlush | None = None
        self.backoff = Backoff(base_s=0.2, cap_s=5.0)
        self.retry_at = 0.0

    async def step(self) -> None:
        if "stream" not in self.stream or time.monotonic() < self.retry_at:
            return
        try:
            await self._flush()
        except Exception as exc:
            kind = Fault.DEPENDENCY if isinstance(exc, DependencyDown) else classify(exc)
            self.state.metrics.errors.labels(str(kind)).inc()
            report(log, "flush", exc, self.state.throttle)
            self.state.flowing.clear()
            self.state.metrics.paused.set(1)
            self.retry_at = time.monotonic() + self.backoff.next(random.random())
            return
        self.backoff.reset()
        self.state.flowing.set()
        self.state.metrics.paused.set(0)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        if self.sink is None:
            from analytics.sink import RedisSink
            from runtime.redisconn import sync_redis
            from schemas.store_access import RedisUser

            parts = await loop.run_in_executor(None, topic_partitions, self.settings,
                                               self.config.topic)
            r = sync_redis(self.settings, RedisUser.ANALYTICS, socket_timeout=5,
                           socket_connect_timeout=2)
            self.sink = RedisSink(r, self.spec.mode, parts, self.spec.step_ms)
        if self.pending is None:
            now = int(time.time() * 1000)
            plan = self.state.agg.flush(now, _caught_up(self.app, self.config.topic, self.state))
            self.pending = PendingFlush(plan, now, self.app.consumer_generation_id)
        p = self.pending
        if p.records is None:
            p.written(await loop.run_in_executor(None, self.sink.write, p.plan, p.now_ms))
            report_skipped(self.sink.skipped, self.state.metrics, log, self.state.throttle)
            self.state.metrics.windows.inc(final_windows(p.records or []))
        while p.unsent:
            rec = p.unsent[0]
            fut = await self.out.send(key=rec.key, value=rec.encode())
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.config.deliver_timeout_s)
            except TimeoutError as exc:
                raise DependencyDown("analytics.concurrency: a record not delivered") from exc
            p.unsent.pop(0)
        if p.generation == self.app.consumer_generation_id:   # else the events are not ours
            for ev in self.state.ackable(p.plan.commits):
                await self.stream["stream"].ack(ev)
        self.pending = None


def build_app(settings: Settings, spec: WindowSpec, config: WorkerConfig | None = None) -> Any:
    import faust

    config = config or WorkerConfig()
    app = faust.App(config.group, **app_config(settings))
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw")
    beats, out = app.topic(config.topic, **raw), app.topic(config.out_topic, **raw)
    state = _State(spec, config)
    app.analytics_state = state  # type: ignore[attr-defined]
    box: dict[str, Any] = {}
    flusher = _Flusher(app, settings, spec, config, state, out, box)

    @app.agent(beats, name="heartbeats")
    async def fold(stream: Any) -> None:
        box["stream"] = manual = stream.noack()
        # noack_take, not take_events: take_events acks every event of a batch once the
        # batch is handed over (faust-streaming 0.15.3: streams.py), whatever noack() says,
        # so faust committed the beats of windows still open and a partition's next owner
        # never saw them.
        async for events in manual.noack_take(config.batch, within=0.5):
            state.fold(events, app.consumer_generation_id)
            # While a flush waits for a dependency, take nothing more: faust's bounded
            # buffer (stream_buffer_maxsize) fills and fetching stops.
            await state.flowing.wait()

    @app.timer(interval=config.flush_s)
    async def flush() -> None:
        await flusher.step()   # never raises: a faust timer that raises crashes the worker

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
        state.revoke([tp.partition for tp in revoked if tp.topic == config.topic])

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(_app: Any, assigned: Any, **_kw: Any) -> None:
        # Eager rebalancing revokes every partition first, so each one assigned is rebuilt
        # from its committed offset (aiokafka seeks there), never from what this process held.
        state.assign([tp.partition for tp in assigned if tp.topic == config.topic],
                     int(time.time() * 1000))

    return app


def _caught_up(app: Any, topic: str, state: _State) -> set[int]:
    """Partitions read up to the log end: only those may be declared idle."""
    from faust.types import TP

    out = set()
    for p, core in state.agg.cores.items():
        high = app.consumer.highwater(TP(topic, p))
        if high is not None and core.next_offset >= high:
            out.add(p)
    return out


def run_faust_worker(settings: Settings, spec: WindowSpec, config: WorkerConfig) -> int:
    from faust.worker import Worker

    from runtime.endpoints import Health, serve_in_thread

    app = build_app(settings, spec, config)
    state = app.analytics_state
    health = Health.of_registry(state.metrics.registry,
                                ready=lambda: bool(app.consumer.assignment())
                                and state.flowing.is_set())
    server = serve_in_thread(health, settings.analytics_metrics_port,
                             settings.analytics_metrics_host)
    try:
        Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    finally:
        server.shutdown()
    return 0
