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

Replicas and faults (STYLE.md 13-14, ``runtime.faults``):

* Jobs belong to the assignment (``tracker.Ownership``): on revoke, attempts in flight finish
  (up to ``revoke_grace_s``), what is done is committed, the rest (held ones included) dropped
  for the new owner to re-read. (The old owner used to send a moved partition's queued jobs
  while the new owner sent them too.)
* A dependency that is down is waited for: the job is retried with backoff and stays in work;
  intake pauses once ``max_in_work`` messages are in work. A bug on one job dead-letters it
  (``internal_error``, with its traceback); at intake, the message is logged and skipped.
* Every background loop is guarded (``periodic``, ``supervised``): an error never ends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from notifier.jobs import Job, NotifierConfig, Sub
from notifier.metrics import NotifierMetrics
from notifier.retry import DeadLetter, Delivered, next_step
from notifier.routing import Action, decide
from notifier.signing import sign
from notifier.spoiler import Held, SpoilerHold
from notifier.subscriptions import Subscription, load_all
from notifier.targets import BlockedTarget, check_url, guarded_resolver, parse_allow
from notifier.tracker import OffsetTracker, Ownership
from runtime.eventloop import raise_if_cancelled
from runtime.faults import Backoff, Fault, Throttle, periodic, report, supervised
from runtime.kafka import aiokafka_config
from schemas.access import Principal
from schemas.notifications import Kind, Notification, NotificationError, decode
from schemas.settings import Settings
from schemas.topology import RedisKeys
from schemas.view import UPDATE_FIELD

log = logging.getLogger("stumpcast.notifier")
DELIVERED_TTL_S = 7 * 24 * 3600
DLQ_MAXLEN = 100_000
MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is not needed: read this much at most


class Notifier:
    def __init__(self, settings: Settings, config: NotifierConfig | None = None,
                 metrics: NotifierMetrics | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        config = config or NotifierConfig()
        self.settings, self.config = settings, config
        self.metrics = metrics or NotifierMetrics()
        self.rand = rand
        self.subs: dict[str, Sub] = {}
        self.hold = SpoilerHold(config.max_hold_ms)
        self.tracker = OffsetTracker()
        self.owned = Ownership()
        self.inflight: Counter[int] = Counter()     # partition -> jobs being processed
        self.checks: deque[tuple[float, Notification]] = deque()
        self.throttle = Throttle()
        self.stop = asyncio.Event()
        self.ready = False
        self.redis: Any = None
        self.http: Any = None
        self.consumer: Any = None
        self.allow = parse_allow(config.allow_hosts)

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        import aiohttp

        from runtime.redisconn import async_redis
        from schemas.store_access import RedisUser

        # Timeouts: a server that hangs fails the call (retried), it does not block the loop.
        self.redis = async_redis(self.settings, RedisUser.NOTIFIER, socket_timeout=5,
                                 socket_connect_timeout=2)
        # Webhooks reach public addresses only, checked on the addresses resolved.
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            connector=aiohttp.TCPConnector(resolver=guarded_resolver(self.allow)))
        try:
            if await self._start_consumer():
                await self._serve()
        finally:
            await self.http.close()
            await self.redis.aclose()

    async def _start_consumer(self) -> bool:
        """Start the consumer, retried while Kafka is down; False if stopped first."""
        from aiokafka import AIOKafkaConsumer

        backoff = Backoff()
        while not self.stop.is_set():
            consumer = AIOKafkaConsumer(
                **aiokafka_config(self.settings, Principal.NOTIFIER), group_id=self.config.group,
                enable_auto_commit=False, auto_offset_reset=self.config.start)
            consumer.subscribe([self.config.topic], listener=_listener(self))
            try:
                await consumer.start()
                self.consumer = consumer
                return True
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if report(log, "kafka consumer start", exc, self.throttle) is Fault.BUG:
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff.next(self.rand()))
        return False

    async def _serve(self) -> None:
        c = self.config
        intake = asyncio.create_task(supervised("intake", self._consume, log, self.throttle))
        loops = [asyncio.create_task(periodic(what, every, step, log, self.throttle,
                                              on_fault=self._count_fault))
                 for what, every, step in (
                     ("subscriptions", c.refresh_s, self.load_subscriptions),
                     ("spoiler hold", c.hold_tick_s, self.release_held),
                     ("commit", 1.0, self._commit_step),
                     ("gateway check", 0.5, self._check_gateway))]
        try:
            await self.stop.wait()
        finally:
            intake.cancel()
            await asyncio.gather(intake, return_exceptions=True)
            # Stopping gives every partition up: attempts in flight finish, what is done is
            # committed, nothing new starts (a job cut mid-POST could reach its receiver twice).
            await self.revoke(set(self.owned.gens))
            tasks = loops + [s.task for s in self.subs.values() if s.task]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.consumer.stop()

    async def load_subscriptions(self) -> None:
        current = load_all(await self.redis.hgetall(RedisKeys.webhooks))
        for sub_id in list(self.subs):
            if sub_id not in current:
                self._remove(self.subs.pop(sub_id))
        for sub_id, sub in current.items():
            if sub_id in self.subs:
                self.subs[sub_id].sub = sub
            else:
                s = self.subs[sub_id] = Sub(sub, asyncio.Queue(self.config.queue_max))
                s.task = asyncio.create_task(self._deliver_loop(s))
        self.metrics.subscribers.set(len(self.subs))

    def _remove(self, s: Sub) -> None:
        """A removed webhook's jobs are finished: nothing is left to deliver them to."""
        s.removed = True
        if s.task:
            s.task.cancel()
        while not s.queue.empty():
            job = s.queue.get_nowait()
            if self.owned.owns(job.partition, job.generation):
                self.tracker.done(job.partition, job.offset)
        for h in self.hold.drop(subscription_id=s.sub.id):
            self.tracker.done(*h.ref)

    # -- intake ---------------------------------------------------------------------------
    async def _consume(self) -> None:
        await self.load_subscriptions()
        self.ready = True
        while True:
            assigned = self.consumer.assignment()
            if self.tracker.in_work() >= self.config.max_in_work:
                self.consumer.pause(*assigned)    # bounded: deliveries catch up first
            elif self.consumer.paused():
                self.consumer.resume(*self.consumer.paused())
            batch = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for msgs in batch.values():
                for msg in msgs:
                    self._intake(msg.partition, msg.offset, msg.value)

    def _intake(self, partition: int, offset: int, raw: bytes) -> None:
        if self.owned.generation(partition) is None:
            return   # fetched before its partition moved: the new owner reads it
        try:
            note = decode(raw)
        except NotificationError as exc:
            if self.throttle.allow("bad notification", time.monotonic()):
                log.warning("bad notification (skipped)", extra={"error": str(exc)})
            self.tracker.add(partition, offset, 0)
            return
        try:
            self.accept(partition, offset, note, raw)
        except Exception as exc:
            self.metrics.errors.labels("bug").inc()
            report(log, "intake (message skipped)", exc, self.throttle, partition=partition,
                   offset=offset, id=note.id)
            self.tracker.add(partition, offset, 0)

    def accept(self, partition: int, offset: int, note: Notification, raw: bytes) -> None:
        """Queue ``note`` for every subscriber that wants it."""
        generation = self.owned.generation(partition)
        if generation is None:
            return
        targets = [s for s in self.subs.values() if s.sub.wants(note)]
        if not self.tracker.add(partition, offset, len(targets)):
            return   # in work already (a repeated fetch)
        self.metrics.received.inc()
        for s in targets:
            if note.kind is Kind.RETRACTION and note.retracts:
                s.retracted.setdefault(partition, set()).add(note.retracts)
                held = self.hold.retract(s.sub.id, note.retracts)
                if held is not None:
                    self.metrics.outcomes.labels("cancelled_while_held").inc()
                    self.tracker.done(*held.ref)
            self._enqueue(s, Job(partition, offset, note, raw, generation))
        if len(self.checks) >= self.config.max_checks:
            self.checks.popleft()
            self.metrics.gateway.labels("skipped").inc()
        self.checks.append((time.monotonic() + self.config.gateway_check_s, note))

    def _enqueue(self, s: Sub, job: Job) -> None:
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
        except Exception as exc:
            report(log, "dead letter", exc, self.throttle)
        finally:
            if self.owned.owns(job.partition, job.generation):
                self.tracker.done(job.partition, job.offset)

    # -- delivery -------------------------------------------------------------------------
    async def _deliver_loop(self, s: Sub) -> None:
        while True:
            job = await s.queue.get()
            if not self.owned.owns(job.partition, job.generation):
                continue   # its partition moved: the new owner delivers it
            self.inflight[job.partition] += 1
            try:
                await self._process_guarded(s, job)
            except asyncio.CancelledError:
                if s.removed:
                    self.tracker.done(job.partition, job.offset)
                raise
            finally:
                self.inflight[job.partition] -= 1

    async def _process_guarded(self, s: Sub, job: Job) -> None:
        backoff = Backoff()
        while self.owned.owns(job.partition, job.generation):
            try:
                await self.process(s, job)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = report(log, "delivery", exc, self.throttle, subscription=s.sub.id,
                              id=job.note.id)
                self.metrics.errors.labels(str(kind)).inc()
                if kind is Fault.BUG:
                    await self._dead_letter_bug(s, job, exc)
                    return
                await self._sleep_owned(job, backoff.next(self.rand()))

    async def process(self, s: Sub, job: Job) -> None:
        note, done_key = job.note, RedisKeys.webhook_delivered(s.sub.id)
        delivered = bool(await self.redis.sismember(done_key, note.id))
        original = bool(note.retracts and await self.redis.sismember(done_key, note.retracts))
        action = decide(note, delivered=delivered,
                        retracted=note.id in s.retracted.get(job.partition, ()),
                        original_delivered=original, no_spoilers=s.sub.no_spoilers,
                        released=job.released)
        if action is Action.HOLD:
            self.hold.hold(Held(s.sub.id, s.sub.session_id or "", note, job.raw,
                                _ms(note.instant.timestamp()), _ms(time.time()),
                                (job.partition, job.offset)))
            self.metrics.held.set(len(self.hold))
            return
        if action is Action.SEND:
            if not await self._send(s.sub, job):
                return   # the partition moved between attempts: its new owner sends it
        else:
            self.metrics.outcomes.labels(action.value).inc()
        if note.kind is Kind.RETRACTION and note.retracts:   # its original came before it
            s.retracted.get(job.partition, set()).discard(note.retracts)
        self.tracker.done(job.partition, job.offset)

    async def _send(self, sub: Subscription, job: Job) -> bool:
        """POST until delivered or dead-lettered (True), or the partition moved (False)."""
        attempt, started = 0, time.monotonic()
        while True:
            if not self.owned.owns(job.partition, job.generation):
                return False
            attempt += 1
            try:
                status, error = await self._post(sub, job, attempt)
            except BlockedTarget as exc:  # never retried: the address will not become public
                log.warning("webhook target refused", extra={"subscription": sub.id,
                                                             "error": str(exc)})
                await self._dead_letter(sub, job, f"blocked target: {exc}", attempt)
                return True
            self.metrics.attempts.inc()
            step = next_step(self.config.policy, attempt, status, error, self.rand())
            if isinstance(step, Delivered):
                await self._until_done("record delivered", self._recorder(sub, job))
                self.metrics.outcomes.labels("delivered").inc()
                self.metrics.latency.observe(time.monotonic() - started)
                return True
            if isinstance(step, DeadLetter):
                await self._dead_letter(sub, job, step.reason, attempt)
                return True
            if not await self._sleep_owned(job, step.delay_s):
                return False

    def _recorder(self, sub: Subscription, job: Job) -> Callable[[], Awaitable[Any]]:
        done_key = RedisKeys.webhook_delivered(sub.id)
        return lambda: self.redis.pipeline(transaction=False).sadd(done_key, job.note.id) \
            .expire(done_key, DELIVERED_TTL_S).execute()

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

    async def _dead_letter(self, sub: Subscription, job: Job, reason: str, attempts: int,
                           **more: str) -> None:
        fields = {"subscription": sub.id, "url": sub.url, "id": job.note.id, "reason": reason,
                  "attempts": attempts, "notification": job.raw, **more}
        await self._until_done("dead letter", lambda: self.redis.xadd(
            RedisKeys.webhook_dead_letters, fields, maxlen=DLQ_MAXLEN, approximate=True))
        self.metrics.outcomes.labels("dead_lettered").inc()

    async def _dead_letter_bug(self, s: Sub, job: Job, exc: Exception) -> None:
        """A bug on one job: dead-letter it with its traceback and carry on."""
        tb = "".join(traceback.format_exception(exc))[-4000:]
        try:
            await self._dead_letter(s.sub, job, f"internal_error: {type(exc).__name__}: {exc}",
                                    0, traceback=tb)
        except Exception as again:
            report(log, "dead letter", again, self.throttle)
        self.tracker.done(job.partition, job.offset)

    async def _until_done(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Redis calls that must happen once the webhook has answered: retried while Redis is
        down (the POST is not repeated). A bug raises."""
        backoff = Backoff()
        while True:
            raise_if_cancelled()  # a stop's cancel lost in the failed call (runtime.eventloop)
            try:
                await call()
                return
            except Exception as exc:
                kind = report(log, what, exc, self.throttle)
                self._count_fault(kind)
                if kind is Fault.BUG:
                    raise
                await asyncio.sleep(backoff.next(self.rand()))

    def _count_fault(self, kind: Fault) -> None:
        self.metrics.errors.labels(str(kind)).inc()

    async def _sleep_owned(self, job: Job, seconds: float) -> bool:
        """Sleep; False as soon as the job's partition is not this process's any more."""
        deadline = time.monotonic() + seconds
        while self.owned.owns(job.partition, job.generation):
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, 0.1))
        return False

    # -- the assignment -------------------------------------------------------------------
    async def revoke(self, partitions: set[int]) -> None:
        """Stop taking the partitions' jobs, let attempts in flight finish, commit what is
        done, forget the rest (held jobs included): the new owner re-reads it."""
        self.owned.revoke(partitions)
        self.hold.drop(partitions=partitions)
        self.metrics.held.set(len(self.hold))
        await self._wait_inflight(partitions, self.config.revoke_grace_s)
        try:
            await self._commit(partitions)
        except Exception as exc:
            report(log, "commit on revoke", exc, self.throttle)
        for p in partitions:
            self.tracker.forget(p)
            for s in self.subs.values():
                s.retracted.pop(p, None)

    def assign(self, partitions: set[int]) -> None:
        self.owned.assign(partitions)

    async def _wait_inflight(self, partitions: set[int], grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        while any(self.inflight[p] for p in partitions) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    # -- spoiler hold, gateway check, commits -------------------------------------------
    async def release_held(self) -> None:
        sessions = sorted(self.hold.sessions())
        if not sessions:
            return
        values = await self.redis.hmget(RedisKeys.playheads, sessions)
        playheads = {s: int(v) for s, v in zip(sessions, values, strict=True) if v is not None}
        released, expired = self.hold.release(playheads, _ms(time.time()))
        for h in released:
            generation = self.owned.generation(h.ref[0])
            if (s := self.subs.get(h.subscription_id)) is not None and generation is not None:
                self._enqueue(s, Job(*h.ref, h.note, h.raw, generation, released=True))
        for h in expired:
            self.metrics.outcomes.labels("expired_while_held").inc()
            self.tracker.done(*h.ref)
        self.metrics.held.set(len(self.hold))

    async def _check_gateway(self) -> None:
        now = time.monotonic()
        while self.checks and self.checks[0][0] <= now:
            note = self.checks[0][1]
            rows = await self.redis.xrange(RedisKeys.notifications(note.match_id),
                                           min=f"{note.seq}-0", max=f"{note.seq}")
            self.checks.popleft()
            found = any(_note_id(fields) == note.id for _, fields in rows)
            self.metrics.gateway.labels("present" if found else "missing").inc()

    async def _commit_step(self) -> None:
        self.metrics.in_work.set(self.tracker.in_work())
        await self._commit()

    async def _commit(self, partitions: set[int] | None = None) -> None:
        """Commit the lowest unfinished offset of ``partitions`` (default: those owned)."""
        from aiokafka import TopicPartition

        mine = set(self.owned.gens) if partitions is None else partitions
        offsets = {TopicPartition(self.config.topic, p): o
                   for p, o in self.tracker.committable().items() if p in mine and o > 0}
        if offsets:
            await self.consumer.commit(offsets)


def _listener(notifier: Notifier) -> Any:
    from aiokafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await notifier.revoke({tp.partition for tp in revoked})

        async def on_partitions_assigned(self, assigned: Any) -> None:
            notifier.assign({tp.partition for tp in assigned})

    return Listener()


def _note_id(fields: dict[Any, Any]) -> str | None:
    raw = fields.get(UPDATE_FIELD.encode()) or fields.get(UPDATE_FIELD)
    try:
        return decode(raw).id if raw else None
    except NotificationError:
        return None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def run_notifier(settings: Settings, config: NotifierConfig | None = None) -> int:
    """Run until SIGINT/SIGTERM, with /metrics, /healthz, /readyz on the notifier port."""
    import signal

    from runtime.endpoints import Health, serve_in_thread

    async def main() -> None:
        notifier = Notifier(settings, config or NotifierConfig.of(settings))
        health = Health.of_registry(notifier.metrics.registry, ready=lambda: notifier.ready)
        server = serve_in_thread(health, settings.notifier_metrics_port,
                                 settings.notifier_metrics_host)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, notifier.stop.set)
        try:
            await notifier.run()
        finally:
            server.shutdown()

    asyncio.run(main())
    return 0
