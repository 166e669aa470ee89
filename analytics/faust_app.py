"""The analytics topology as a faust app: a thin adapter over the same pure ``Aggregator``.

``build_app(settings, spec, config)`` makes everything (no import-time app, aiokafka ``kafka://``
transport). One agent takes batches (``take_events``, up to ``config.batch`` or 0.5 s) and
folds them; a 1 s timer flushes to Redis (``RedisSink`` in a thread, so the loop is not blocked)
and sends complete windows to ``analytics.concurrency``. Acks are manual: a message is acked
once no open window needs it (``PartitionWindows.commit_offset``), so faust's committed offset
never passes a beat a restart would need.

Difference from the confluent-kafka worker (``analytics.worker``, the default): faust
commits no metadata, so a restarted faust worker does not know which windows it had already
reported; a beat re-read for such a window may re-report it with fewer sessions. Use this engine
where faust is the house runtime and that edge is acceptable, the default one for exactness
across restarts and for throughput (see BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from analytics.aggregate import Aggregator
from analytics.config import WorkerConfig, topic_partitions
from analytics.metrics import Metrics
from analytics.window import WindowSpec
from runtime.kafka import faust_config
from schemas.access import Principal
from schemas.heartbeats import HeartbeatError, decode
from schemas.settings import Settings


def app_config(settings: Settings) -> dict[str, Any]:
    return dict(
        **faust_config(settings, Principal.ANALYTICS),
        autodiscover=False, web_enabled=False, topic_disable_leader=True,
        table_standby_replicas=0, store="memory://",
        topic_replication_factor=settings.kafka_replication_factor,
        consumer_auto_offset_reset="earliest", broker_commit_interval=1.0,
        broker_max_poll_records=5000, stream_buffer_maxsize=20000, producer_linger=0.02,
    )


class _State:
    def __init__(self, spec: WindowSpec, config: WorkerConfig) -> None:
        self.agg = Aggregator(spec, config.idle_ms)
        self.pending: dict[int, deque[Any]] = {}
        self.metrics = Metrics()

    def fold(self, events: list[Any]) -> None:
        now = int(time.time() * 1000)
        by_part: dict[int, list[tuple[int, Any]]] = {}
        for ev in events:
            msg = ev.message
            self.pending.setdefault(msg.partition, deque()).append(ev)
            try:
                by_part.setdefault(msg.partition, []).append((msg.offset, decode(ev.value)))
            except HeartbeatError:
                self.metrics.rejects.inc()
        for p, beats in by_part.items():
            if p not in self.agg.cores:
                self.agg.assign(p, None, now)
            self.agg.fold(p, beats, now)
            self.metrics.beats.inc(len(beats))

    def ackable(self, commits: dict[int, tuple[int, int]]) -> list[Any]:
        out = []
        for p, (offset, _closed) in commits.items():
            q = self.pending.get(p)
            while q and q[0].message.offset < offset:
                out.append(q.popleft())
        return out

    def revoke(self, partitions: Any) -> None:
        for tp in partitions:
            self.agg.revoke(tp.partition)
            self.pending.pop(tp.partition, None)


def build_app(settings: Settings, spec: WindowSpec, config: WorkerConfig | None = None) -> Any:
    import faust
    import redis

    config = config or WorkerConfig()

    from analytics.sink import RedisSink

    app = faust.App(config.group, **app_config(settings))
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw")
    beats, out = app.topic(config.topic, **raw), app.topic(config.out_topic, **raw)
    state = _State(spec, config)
    app.analytics_state = state  # type: ignore[attr-defined]
    box: dict[str, Any] = {}

    @app.agent(beats, name="heartbeats")
    async def fold(stream: Any) -> None:
        box["stream"] = manual = stream.noack()
        async for events in manual.take_events(config.batch, within=0.5):
            state.fold(events)

    @app.timer(interval=config.flush_s)
    async def flush() -> None:
        if "stream" not in box:
            return
        if "sink" not in box:
            parts = await asyncio.get_running_loop().run_in_executor(
                None, topic_partitions, settings, config.topic)
            box["sink"] = RedisSink(redis.Redis.from_url(settings.redis_url), spec.mode,
                                    parts, spec.step_ms)
        now = int(time.time() * 1000)
        plan = state.agg.flush(now, _caught_up(app, config.topic, state))
        records = await asyncio.get_running_loop().run_in_executor(
            None, box["sink"].write, plan, now)
        for rec in records:
            await out.send(key=rec.key, value=rec.encode())
        for ev in state.ackable(plan.commits):
            await box["stream"].ack(ev)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
        state.revoke(revoked)

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
    health = Health.of_registry(app.analytics_state.metrics.registry,
                                ready=lambda: bool(app.consumer.assignment()))
    server = serve_in_thread(health, settings.analytics_metrics_port)
    try:
        Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    finally:
        server.shutdown()
    return 0
