"""The faust adapter: one agent feeding ``match.events`` into ``streams.engine.Engine``.

faust stays at this edge (STYLE.md): nothing is created at import; ``build_app(settings)``
makes the app, its topics and its agent. The agent iterates with ``noack()``: a message is
acked by the engine once its event is durable in the event store (or in the DLQ), so the
offset faust commits never passes an event that a restart would need again.

Latency tuning (defaults in brackets, see infra.md §3 and faust's settings module):

* ``broker_commit_interval`` 0.2 s [2.8 s] and ``broker_commit_every`` 200 [10 000]: commit
  offsets often, so a restarted worker re-reads little (the re-read is harmless, not free);
* ``producer_linger`` 0 [0] and ``producer_acks`` -1: a card or a reject is sent at once and
  acknowledged by all in-sync replicas (notifications go through ``streams.relay``'s own
  transactional producers, ``linger.ms`` 0);
* ``stream_buffer_maxsize`` 1024 [4096]: bounded read-ahead per partition;
* aiokafka's ``fetch_max_wait_ms`` is fixed at 1500 ms by faust's driver, but with
  ``fetch_min_bytes=1`` the broker answers a fetch as soon as one record is there, so it only
  bounds an idle poll; the measured produce→Redis latency is in BENCHMARKS.md;
* ``topic_disable_leader``: no leader-election topic; ``table_standby_replicas`` 0: no tables;
* ``stream_wait_empty`` False [True]: a rebalance does not wait for in-flight messages to be
  acked. Ours are acked only once stored and published, and events buffered but not yet taken
  by the paused agent never are, so waiting deadlocked the rebalance (seen when a second
  worker joined). The new owner re-reads what was not acked; every effect is idempotent;
* ``broker_session_timeout`` 10 s [60 s]: a killed worker's partitions move within seconds;
  with ``STUMPCAST_STREAMS_INSTANCE_ID`` (static membership) a restarted worker takes them
  back at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from schemas.access import Principal
from schemas.settings import Settings
from schemas.topology import (
    GROUP_STREAMS,
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    SCORECARDS,
)

log = logging.getLogger(__name__)


class FaustOutputs:
    """``engine.Outputs`` on faust topics (raw bytes, keyed by match). Notifications do not
    go through faust: ``streams.relay`` publishes them in Kafka transactions."""

    def __init__(self, cards: Any, dlq: Any) -> None:
        self._cards, self._dlq = cards, dlq

    async def scorecard(self, match_id: str, card: bytes) -> None:
        await (await self._cards.send(key=match_id.encode(), value=card))

    async def dead_letter(self, key: bytes | None, value: bytes) -> None:
        await (await self._dlq.send(key=key, value=value))


def app_config(settings: Settings) -> dict[str, Any]:
    from runtime.kafka import faust_config

    return dict(
        **faust_config(settings, Principal.STREAMS),
        autodiscover=False, web_enabled=False, topic_disable_leader=True,
        table_standby_replicas=0, store="memory://",
        topic_replication_factor=settings.kafka_replication_factor,
        processing_guarantee="at_least_once", consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.2, broker_commit_every=200, producer_linger=0.0,
        producer_acks=-1, stream_buffer_maxsize=1024, broker_max_poll_records=500,
        stream_wait_empty=False,
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        consumer_group_instance_id=settings.streams_instance_id or None,
    )


def build_app(settings: Settings, engine_factory: Any) -> Any:
    """The worker's faust app. ``engine_factory(outputs) -> (engine, on_start)`` builds the
    engine once the topics exist; ``on_start`` is awaited as a background task."""
    import faust

    app = faust.App(GROUP_STREAMS, **app_config(settings))
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw")
    events = app.topic(MATCH_EVENTS.name, **raw)
    outputs = FaustOutputs(app.topic(SCORECARDS.name, **raw),
                           app.topic(MATCH_EVENTS_DLQ.name, **raw))
    engine, on_start = engine_factory(outputs)
    from streams.lanes import Lanes

    lanes = Lanes(engine)

    @app.agent(events, name="match-events")
    async def process(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await lanes.submit(event.value, ack=_acker(manual, event),
                               partition=event.message.partition)

    @app.task
    async def start() -> None:
        await on_start(app)

    @app.timer(interval=1.0)
    async def tick() -> None:
        await engine.tick()
        _observe_lag(app, engine)

    @app.timer(interval=0.2)
    async def cards() -> None:
        await engine.cards.flush()

    @app.timer(interval=3.0)
    async def audit() -> None:
        await engine.audit()

    return app


def _acker(stream: Any, event: Any) -> Any:
    """The ack of one message, run by the engine once its effects are durable."""
    return lambda: stream.ack(event)


def _observe_lag(app: Any, engine: Any) -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic != MATCH_EVENTS.name:
            continue
        high = consumer.highwater(tp)
        read = consumer._read_offset.get(tp)  # faust keeps no public read position
        if high is not None:
            engine.metrics.lag.labels(str(tp.partition)).set(max(0, high - (read or 0) - 1))


def make_engine_factory(settings: Settings) -> Any:
    """Wire the engine to Redis, Cassandra (lazily: the worker starts while it is down), the
    backlog, the metrics endpoints."""
    from runtime.endpoints import Health, application, serve
    from runtime.kafka import client_config
    from schemas.signing import Registry
    from streams.engine import Engine, EngineConfig
    from streams.eventstore import LazyCassandraEventStore, StoreBacklog
    from streams.metrics import Metrics
    from streams.pipeline import ScorecardFolder
    from streams.relay import KafkaTxnLog, NoteRelay
    from streams.viewstore import RedisViewStore

    def factory(outputs: FaustOutputs) -> tuple[Any, Any]:
        store = LazyCassandraEventStore(settings.cassandra_hosts, settings.cassandra_port,
                                        settings.cassandra_keyspace)
        backlog = StoreBacklog(store, settings.streams_store_backlog)
        config = EngineConfig(settings.streams_allowed_sources, settings.streams_gap_timeout,
                              Registry.load(settings.scorer_registry))
        metrics = Metrics()
        kafka = client_config(settings, Principal.STREAMS)
        relay = NoteRelay(lambda p: KafkaTxnLog(kafka, p),
                          on_lost=lambda p, ms: engine.relay_lost(p, ms),
                          on_published=metrics.published,
                          min_interval=settings.streams_relay_interval)
        engine = Engine(ScorecardFolder(), RedisViewStore.from_url(settings.redis_url), store,
                        backlog, outputs, config, relay, metrics)

        async def on_start(app: Any) -> None:
            health = Health(engine.metrics.exposition,
                            ready=lambda: bool(app.consumer.assignment()) and backlog.healthy)
            await serve(application(health), settings.streams_metrics_port)
            await backlog.run()

        return engine, on_start

    return factory


def run_worker(settings: Settings) -> int:
    """Run one worker until SIGINT/SIGTERM (faust's Worker owns the loop and the signals)."""
    from faust.worker import Worker

    from runtime.eventloop import loop_factory

    # uvloop: ~10% more events/s at --speed 0 (BENCHMARKS.md)
    factory = loop_factory(settings.event_loop)
    loop = factory() if factory is not None else None
    if loop is not None:
        asyncio.set_event_loop(loop)
    app = build_app(settings, make_engine_factory(settings))
    worker = Worker(app, loglevel=settings.log_level, quiet=True, loop=loop)
    worker.execute_from_commandline()
    return 0
