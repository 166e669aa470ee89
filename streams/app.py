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

Partitions move (principle 13): faust's ``on_partitions_revoked`` and
``on_partitions_assigned`` signals become the engine's plain ``revoke(partitions)`` and
``assign(partitions)`` (and drop the lanes' queued events of revoked partitions), so the engine
holds state only for what the group gave it. Acks go to faust in offset order per partition
(``streams.ownership.OrderedAcks``), and a tracker is closed on revoke: a late ack of an
earlier assignment is never passed on. The timers are guarded: a failure is logged and the
next run tries again (a Redis outage must not end the view audit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from schemas.access import Principal
from schemas.settings import Settings
from schemas.topology import (
    GROUP_STREAMS,
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    SCORECARDS,
)
from streams.errors import Backoff, OutputError, Unavailable
from streams.ownership import OrderedAcks

log = logging.getLogger(__name__)


class FaustOutputs:
    """``engine.Outputs`` on faust topics (raw bytes, keyed by match). Notifications do not
    go through faust: ``streams.relay`` publishes them in Kafka transactions. A send Kafka
    could not take (down, timed out) raises ``OutputError`` (retriable)."""

    def __init__(self, cards: Any, dlq: Any) -> None:
        self._cards, self._dlq = cards, dlq

    async def scorecard(self, match_id: str, card: bytes) -> None:
        await _sent(self._cards, match_id.encode(), card)

    async def dead_letter(self, key: bytes | None, value: bytes) -> None:
        await _sent(self._dlq, key, value)


async def _sent(topic: Any, key: bytes | None, value: bytes) -> None:
    """Send and wait for the broker; foreign errors translated at this seam."""
    try:
        await (await topic.send(key=key, value=value))
    except Exception as exc:
        if _retriable(exc):
            raise OutputError(f"{type(exc).__name__}: {exc}") from exc
        raise


def _retriable(exc: BaseException) -> bool:
    """Kafka down, a timeout or a retriable broker error (faust wraps aiokafka's errors in
    ``ProducerSendError``, so the cause is looked at too)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    for e in (exc, exc.__cause__):
        if isinstance(e, KafkaConnectionError | KafkaTimeoutError | asyncio.TimeoutError
                      | ConnectionError):
            return True
        if isinstance(e, KafkaError) and getattr(e, "retriable", False):
            return True
    return False


class PartitionAcks:
    """The agent's acks, in offset order per partition (``OrderedAcks``), and the re-read of
    a partition from its oldest unacknowledged message."""

    def __init__(self) -> None:
        self.stream: Any = None  # the agent's manual-ack stream, set when the agent starts
        self._parts: dict[int, OrderedAcks[Any]] = {}
        self.seeks: set[asyncio.Future[None]] = set()  # re-reads under way

    def take(self, event: Any) -> Callable[[], Any] | None:
        """The ack of one message, or ``None`` if it is to be skipped (a stale copy from
        faust's buffer after a re-read: the re-read brings it again)."""
        p, offset = event.message.partition, event.message.offset
        acks = self._parts.get(p)
        if acks is None:
            acks = self._parts[p] = OrderedAcks()
        if not acks.accept(offset):
            return None
        acks.take(offset, event)
        return lambda: self._release(acks.done(offset))

    async def _release(self, events: list[Any]) -> None:
        for event in events:
            await self.stream.ack(event)

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            acks = self._parts.pop(p, None)
            if acks is not None:
                acks.close()

    def reread_from(self, partition: int) -> int | None:
        """Start the partition over at its oldest unacknowledged offset (returned; ``None``
        if nothing is unacknowledged): what was taken before is not acked any more."""
        acks = self._parts.get(partition)
        head = acks.head() if acks is not None else None
        if acks is not None and head is not None:
            acks.close()
            self._parts[partition] = OrderedAcks(resume_at=head)
        return head


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
    """The worker's faust app. ``engine_factory(outputs, reread) -> (engine, on_start)``
    builds the engine once the topics exist; ``on_start`` is awaited as a background task."""
    import faust

    app = faust.App(GROUP_STREAMS, **app_config(settings))
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw")
    events = app.topic(MATCH_EVENTS.name, **raw)
    outputs = FaustOutputs(app.topic(SCORECARDS.name, **raw),
                           app.topic(MATCH_EVENTS_DLQ.name, **raw))
    acks = PartitionAcks()
    engine, on_start = engine_factory(outputs, lambda p: _reread(app, acks, p))
    from streams.lanes import Lanes

    lanes = Lanes(engine)

    @app.agent(events, name="match-events")
    async def process(stream: Any) -> None:
        manual = acks.stream = stream.noack()
        async for event in manual.events():
            ack = acks.take(event)
            if ack is not None:
                await lanes.submit(event.value, ack=ack, partition=event.message.partition)

    @app.task
    async def start() -> None:
        await on_start(app)

    _follow_assignment(app, acks, lanes, engine)
    _timers(app, engine)
    return app


def _follow_assignment(app: Any, acks: PartitionAcks, lanes: Any, engine: Any) -> None:
    """faust's rebalance signals as the engine's plain ``revoke`` and ``assign``."""

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # No await before the engine lets go: faust resumes the flow on its own task.
        ps = _ours(args[0] if args else kwargs.get("revoked", ()))
        acks.revoke(ps)
        lanes.revoke(ps)
        await _guarded("revoke", lambda: engine.revoke(ps))

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # faust seeks every assigned partition back to its committed offset, so whatever was
        # taken under an earlier assignment is read again: its acks are closed here.
        ps = _ours(args[0] if args else kwargs.get("assigned", ()))
        acks.revoke(ps)
        lanes.revoke(ps)
        await _guarded("assign", lambda: engine.assign(ps))


def _timers(app: Any, engine: Any) -> None:
    """Gap look-ups and lag (1 s), conflated cards (0.2 s), the view audit (3 s); each run
    guarded, so a failure never ends its timer."""

    @app.timer(interval=1.0)
    async def tick() -> None:
        await _guarded("tick", engine.tick)
        await _guarded("lag", lambda: _observe_lag(app, engine))

    @app.timer(interval=0.2)
    async def cards() -> None:
        await _guarded("cards", engine.cards.flush)

    @app.timer(interval=3.0)
    async def audit() -> None:
        await _guarded("audit", engine.audit)


def _ours(tps: Any) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == MATCH_EVENTS.name}


async def _guarded(name: str, job: Callable[[], Any]) -> None:
    """Run a timer's or a signal's job; a failure is logged, never ends the timer."""
    try:
        result = job()
        if asyncio.iscoroutine(result):
            await result
    except asyncio.CancelledError:
        raise
    except Unavailable as exc:
        log.warning(f"{name}: a dependency is unavailable, next run tries again",
                    extra={"error": str(exc)})
    except Exception:
        log.exception(f"{name} failed, next run tries again")


def _reread(app: Any, acks: PartitionAcks, partition: int) -> None:
    """Seek ``partition`` back to its oldest unacknowledged message (faust's public seek).
    The seek is retried until it is done: until then the partition's newer messages are
    skipped as stale (``OrderedAcks.accept``)."""
    from faust.types import TP

    head = acks.reread_from(partition)
    if head is None:
        return

    async def seek() -> None:
        backoff = Backoff()
        while partition in _ours(app.consumer.assignment()):
            try:
                await app.consumer.seek(TP(MATCH_EVENTS.name, partition), head)
                return
            except Exception as exc:
                log.warning("re-read: seek failed, retrying",
                            extra={"partition": partition, "error": str(exc)})
                await asyncio.sleep(backoff.next())

    acks.seeks.add(task := asyncio.ensure_future(seek()))  # asyncio keeps weak refs only
    task.add_done_callback(acks.seeks.discard)


def _observe_lag(app: Any, engine: Any) -> None:
    engine.metrics.partitions.set(len(engine.owner.partitions))
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
    from runtime.scorers import RegistryFile
    from streams.engine import Engine, EngineConfig
    from streams.eventstore import LazyCassandraEventStore, StoreBacklog
    from streams.metrics import Metrics
    from streams.pipeline import ScorecardFolder
    from streams.relay import KafkaTxnLog, NoteRelay
    from streams.viewstore import RedisViewStore

    def factory(outputs: FaustOutputs, reread: Callable[[int], Any]) -> tuple[Any, Any]:
        store = LazyCassandraEventStore(settings)
        backlog = StoreBacklog(store, settings.streams_store_backlog)
        config = EngineConfig(settings.streams_allowed_sources, settings.streams_gap_timeout,
                              RegistryFile(settings.scorer_registry,
                                           settings.scorer_registry_check))
        metrics = Metrics()
        kafka = client_config(settings, Principal.STREAMS)
        relay = NoteRelay(lambda p: KafkaTxnLog(kafka, p),
                          on_published=metrics.published,
                          min_interval=settings.streams_relay_interval)
        engine = Engine(ScorecardFolder(), RedisViewStore.connect(settings), store,
                        backlog, outputs, config, relay, metrics, partitions=(), reread=reread)

        async def on_start(app: Any) -> None:
            health = Health(engine.metrics.exposition,
                            ready=lambda: bool(app.consumer.assignment()) and backlog.healthy)
            await serve(application(health), settings.streams_metrics_port,
                        settings.streams_metrics_host)
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
