"""The notifier: ``match.notifications`` -> webhooks (the shell around the delivery cores).

* One aiokafka consumer in ``GROUP_NOTIFIER``; offsets committed once a second at the lowest
  message still in work (``tracker``), so a restart re-reads only what may not have gone out.
* One ordered queue and task per subscriber: a slow or failing receiver delays only itself,
  and a retraction always follows its original.
* Delivered ids go to ``RedisKeys.webhook_delivered(sub)`` (SADD, 7-day TTL) before the job is
  done: a redelivered message is skipped by id. Undeliverable ones go to the Redis stream
  ``RedisKeys.webhook_dead_letters``.
* Targets are public addresses only, checked after DNS on the addresses the connection uses
  (``notifier.targets``); redirects are never followed (a 3xx is dead-lettered); at most
  ``MAX_RESPONSE_BYTES`` of a response are read; a subscriber's queue holds at most
  ``queue_max`` jobs (beyond that a job is dead-lettered as ``queue full``, so one dead
  receiver cannot grow the notifier without bound).
* No-spoiler subscribers' notifications wait in the ``SpoilerHold`` until the session's
  playhead (``RedisKeys.playheads``, written by the analytics worker from heartbeats or by the
  client) reaches the ball.
* Gateway clients: the streams worker already appends every notification to
  ``RedisKeys.notifications(m)`` in the same Lua step as the view (entry ids ``{seq}-{k}``),
  so the notifier does not write there (a second writer would race that id scheme); it checks
  a few seconds later that each notification is there and counts the missing ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notifier.metrics import NotifierMetrics
from notifier.retry import DeadLetter, Delivered, RetryPolicy, next_step
from notifier.routing import Action, decide
from notifier.signing import sign
from notifier.spoiler import Held, SpoilerHold
from notifier.subscriptions import Subscription, load_all
from notifier.targets import BlockedTarget, check_url, guarded_resolver, parse_allow
from notifier.tracker import OffsetTracker
from runtime.kafka import aiokafka_config
from schemas.access import Principal
from schemas.notifications import Kind, Notification, NotificationError, decode
from schemas.settings import Settings
from schemas.topology import GROUP_NOTIFIER, NOTIFICATIONS, RedisKeys
from schemas.view import UPDATE_FIELD

log = logging.getLogger("stumpcast.notifier")
DELIVERED_TTL_S = 7 * 24 * 3600
DLQ_MAXLEN = 100_000
MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is not needed: read this much at most


@dataclass(frozen=True)
class NotifierConfig:
    topic: str = NOTIFICATIONS.name
    group: str = GROUP_NOTIFIER
    start: str = "latest"            # a new group starts at new notifications, not last week's
    policy: RetryPolicy = RetryPolicy()
    timeout_s: float = 5.0
    max_hold_ms: int = 15 * 60 * 1000
    refresh_s: float = 2.0
    hold_tick_s: float = 0.25
    gateway_check_s: float = 5.0
    allow_hosts: tuple[str, ...] = ()  # non-public addresses or networks hooks may reach
    queue_max: int = 10_000            # jobs waiting per subscriber


@dataclass
class Job:
    partition: int
    offset: int
    note: Notification
    raw: bytes
    released: bool = False


@dataclass
class _Sub:
    sub: Subscription
    queue: asyncio.Queue[Job]
    retracted: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class Notifier:
    def __init__(self, settings: Settings, config: NotifierConfig = NotifierConfig(),
                 metrics: NotifierMetrics | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.settings, self.config = settings, config
        self.metrics = metrics or NotifierMetrics()
        self.rand = rand
        self.subs: dict[str, _Sub] = {}
        self.hold = SpoilerHold(config.max_hold_ms)
        self.tracker = OffsetTracker()
        self.stop = asyncio.Event()
        self.ready = False
        self.redis: Any = None
        self.http: Any = None
        self.consumer: Any = None
        self.allow = parse_allow(config.allow_hosts)

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        import aiohttp
        import redis.asyncio as aioredis
        from aiokafka import AIOKafkaConsumer

        self.redis = aioredis.Redis.from_url(self.settings.redis_url)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        self.http = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
            resolver=guarded_resolver(self.allow)))
        self.consumer = AIOKafkaConsumer(
            **aiokafka_config(self.settings, Principal.NOTIFIER), group_id=self.config.group,
            enable_auto_commit=False, auto_offset_reset=self.config.start)
        self.consumer.subscribe([self.config.topic], listener=_listener(self))
        await self.consumer.start()
        loops = [asyncio.create_task(c()) for c in
                 (self._consume, self._refresh, self._hold_loop, self._commit_loop)]
        try:
            await self.stop.wait()
        finally:
            for t in loops + [s.task for s in self.subs.values() if s.task]:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._commit()
            await self.consumer.stop()
            await self.http.close()
            await self.redis.aclose()

    async def _refresh(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.load_subscriptions()
            await asyncio.sleep(self.config.refresh_s)

    async def load_subscriptions(self) -> None:
        current = load_all(await self.redis.hgetall(RedisKeys.webhooks))
        for sub_id in list(self.subs):
            if sub_id not in current:
                s = self.subs.pop(sub_id)
                if s.task:
                    s.task.cancel()
        for sub_id, sub in current.items():
            if sub_id in self.subs:
                self.subs[sub_id].sub = sub
            else:
                s = self.subs[sub_id] = _Sub(sub, asyncio.Queue(self.config.queue_max))
                s.task = asyncio.create_task(self._deliver_loop(s))
        self.metrics.subscribers.set(len(self.subs))

    # -- intake ---------------------------------------------------------------------------
    async def _consume(self) -> None:
        await self.load_subscriptions()
        self.ready = True
        async for msg in self.consumer:
            try:
                note = decode(msg.value)
            except NotificationError as exc:
                log.warning("bad notification", extra={"error": str(exc)})
                self.tracker.add(msg.partition, msg.offset, 0)
                continue
            self.accept(msg.partition, msg.offset, note, msg.value)

    def accept(self, partition: int, offset: int, note: Notification, raw: bytes) -> None:
        """Queue ``note`` for every subscriber that wants it."""
        self.metrics.received.inc()
        targets = [s for s in self.subs.values() if s.sub.wants(note)]
        self.tracker.add(partition, offset, len(targets))
        for s in targets:
            if note.kind is Kind.RETRACTION and note.retracts:
                s.retracted.add(note.retracts)
                held = self.hold.retract(s.sub.id, note.retracts)
                if held is not None:
                    self.metrics.outcomes.labels("cancelled_while_held").inc()
                    self.tracker.done(*held.ref)
            self._enqueue(s, Job(partition, offset, note, raw))
        asyncio.get_running_loop().call_later(
            self.config.gateway_check_s, lambda: asyncio.ensure_future(self._check_gateway(note)))

    def _enqueue(self, s: _Sub, job: Job) -> None:
        """Queue ``job``; a full queue (the receiver is down or slow) dead-letters it."""
        try:
            s.queue.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("webhook queue full: dead-lettered",
                        extra={"subscription": s.sub.id, "id": job.note.id})
            asyncio.ensure_future(self._dead_letter_job(s.sub, job, "queue full", 0))

    async def _dead_letter_job(self, sub: Subscription, job: Job, reason: str,
                               attempts: int) -> None:
        try:
            await self._dead_letter(sub, job, reason, attempts)
        finally:
            self.tracker.done(job.partition, job.offset)

    # -- delivery -------------------------------------------------------------------------
    async def _deliver_loop(self, s: _Sub) -> None:
        while True:
            job = await s.queue.get()
            try:
                await self.process(s, job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery failed", extra={"subscription": s.sub.id})
                self.tracker.done(job.partition, job.offset)

    async def process(self, s: _Sub, job: Job) -> None:
        note, done_key = job.note, RedisKeys.webhook_delivered(s.sub.id)
        delivered = bool(await self.redis.sismember(done_key, note.id))
        original = bool(note.retracts and await self.redis.sismember(done_key, note.retracts))
        action = decide(note, delivered=delivered, retracted=note.id in s.retracted,
                        original_delivered=original, no_spoilers=s.sub.no_spoilers,
                        released=job.released)
        if action is Action.HOLD:
            self.hold.hold(Held(s.sub.id, s.sub.session_id or "", note, job.raw,
                                _ms(note.instant.timestamp()), _ms(time.time()),
                                (job.partition, job.offset)))
            self.metrics.held.set(len(self.hold))
            return
        if action is Action.SEND:
            await self._send(s.sub, job)
        else:
            self.metrics.outcomes.labels(action.value).inc()
        self.tracker.done(job.partition, job.offset)

    async def _send(self, sub: Subscription, job: Job) -> None:
        attempt, started = 0, time.monotonic()
        while True:
            attempt += 1
            try:
                status, error = await self._post(sub, job, attempt)
            except BlockedTarget as exc:  # never retried: the address will not become public
                log.warning("webhook target refused", extra={"subscription": sub.id,
                                                             "error": str(exc)})
                await self._dead_letter(sub, job, f"blocked target: {exc}", attempt)
                return
            self.metrics.attempts.inc()
            step = next_step(self.config.policy, attempt, status, error, self.rand())
            if isinstance(step, Delivered):
                done_key = RedisKeys.webhook_delivered(sub.id)
                await self.redis.pipeline(transaction=False).sadd(done_key, job.note.id) \
                    .expire(done_key, DELIVERED_TTL_S).execute()
                self.metrics.outcomes.labels("delivered").inc()
                self.metrics.latency.observe(time.monotonic() - started)
                return
            if isinstance(step, DeadLetter):
                await self._dead_letter(sub, job, step.reason, attempt)
                return
            await asyncio.sleep(step.delay_s)

    async def _post(self, sub: Subscription, job: Job, attempt: int) -> tuple[int | None, str]:
        check_url(sub.url, self.allow)  # an IP literal never reaches the resolver
        headers = sign(sub.secret, int(time.time()), job.raw, job.note.id, attempt)
        try:
            async with self.http.post(sub.url, data=job.raw, headers=headers,
                                      allow_redirects=False) as resp:
                await resp.content.read(MAX_RESPONSE_BYTES)  # bounded; the rest is dropped
                return resp.status, ""
        except BlockedTarget:
            raise
        except Exception as exc:  # aiohttp.ClientError, OSError, TimeoutError: all retriable
            return None, f"{type(exc).__name__}: {exc}"

    async def _dead_letter(self, sub: Subscription, job: Job, reason: str, attempts: int) -> None:
        await self.redis.xadd(RedisKeys.webhook_dead_letters, {
            "subscription": sub.id, "url": sub.url, "id": job.note.id, "reason": reason,
            "attempts": attempts, "notification": job.raw}, maxlen=DLQ_MAXLEN, approximate=True)
        self.metrics.outcomes.labels("dead_lettered").inc()

    # -- spoiler hold, gateway check, commits -------------------------------------------
    async def _hold_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.hold_tick_s)
            with contextlib.suppress(Exception):
                await self.release_held()

    async def release_held(self) -> None:
        sessions = sorted(self.hold.sessions())
        if not sessions:
            return
        values = await self.redis.hmget(RedisKeys.playheads, sessions)
        playheads = {s: int(v) for s, v in zip(sessions, values, strict=True) if v is not None}
        released, expired = self.hold.release(playheads, _ms(time.time()))
        for h in released:
            if (s := self.subs.get(h.subscription_id)) is not None:
                self._enqueue(s, Job(*h.ref, h.note, h.raw, released=True))
        for h in expired:
            self.metrics.outcomes.labels("expired_while_held").inc()
            self.tracker.done(*h.ref)
        self.metrics.held.set(len(self.hold))

    async def _check_gateway(self, note: Notification) -> None:
        with contextlib.suppress(Exception):
            rows = await self.redis.xrange(RedisKeys.notifications(note.match_id),
                                           min=f"{note.seq}-0", max=f"{note.seq}")
            found = any(_note_id(fields) == note.id for _, fields in rows)
            self.metrics.gateway.labels("present" if found else "missing").inc()

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self._commit()
            self.metrics.in_work.set(self.tracker.in_work())

    async def _commit(self) -> None:
        from aiokafka import TopicPartition

        assigned = {tp.partition for tp in self.consumer.assignment()}
        offsets = {TopicPartition(self.config.topic, p): o
                   for p, o in self.tracker.committable().items() if p in assigned and o > 0}
        if offsets:
            await self.consumer.commit(offsets)


def _listener(notifier: Notifier) -> Any:
    """Commit what is done before partitions move; forget the revoked ones."""
    from aiokafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            with contextlib.suppress(Exception):
                await notifier._commit()
            for tp in revoked:
                notifier.tracker.forget(tp.partition)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            return None

    return Listener()


def _note_id(fields: dict[Any, Any]) -> str | None:
    raw = fields.get(UPDATE_FIELD.encode()) or fields.get(UPDATE_FIELD)
    try:
        return decode(raw).id if raw else None
    except NotificationError:
        return None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def run_notifier(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM, with /metrics, /healthz, /readyz on the notifier port."""
    import signal

    from runtime.endpoints import Health, serve_in_thread

    async def main() -> None:
        notifier = Notifier(settings, NotifierConfig(
            policy=RetryPolicy(max_attempts=settings.webhook_max_attempts),
            allow_hosts=settings.webhook_allow_hosts, queue_max=settings.webhook_queue))
        health = Health.of_registry(notifier.metrics.registry, ready=lambda: notifier.ready)
        server = serve_in_thread(health, settings.notifier_metrics_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, notifier.stop.set)
        try:
            await notifier.run()
        finally:
            server.shutdown()

    asyncio.run(main())
    return 0
