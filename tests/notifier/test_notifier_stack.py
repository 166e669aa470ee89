"""The notifier against real Kafka and Redis and a local webhook receiver that fails at first."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import pytest

from notifier import subscriptions
from notifier.retry import RetryPolicy
from notifier.signing import HEADER_ID, HEADER_SIGNATURE, verify
from notifier.worker import Notifier, NotifierConfig
from runtime.redisconn import sync_redis
from schemas.access import Principal
from schemas.notifications import Kind, Notification, Priority, retraction
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from tests.kafka_access import admin_config, granted, service_access

pytestmark = pytest.mark.stack
SECRET = "test-secret"


class Receiver:
    """Fails the first ``fail_first`` attempts of every id with a 500, then accepts."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.attempts: Counter[str] = Counter()
        self.accepted: list[str] = []
        self.url = ""
        self.runner = None

    async def start(self) -> None:
        from aiohttp import web

        async def hook(req: web.Request) -> web.Response:
            body = await req.read()
            verify(SECRET, req.headers[HEADER_SIGNATURE], body, now=int(time.time()))
            nid = req.headers[HEADER_ID]
            self.attempts[nid] += 1
            if self.attempts[nid] <= self.fail_first:
                return web.Response(status=500)
            self.accepted.append(nid)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
def topic(kafka_stack):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(kafka_stack))
    name = f"stumpcast.test.notifications.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(30)
    # The notifier runs as its own principal: what an operator grants it on this topic.
    with granted(kafka_stack, service_access(Principal.NOTIFIER, read=[name],
                                             groups=[f"g-{name}"])):
        yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def redis_sync(redis_stack):

    r = sync_redis(redis_stack, RedisUser.ADMIN)
    yield r
    r.close()


def _note(match_id: str, seq: int, ts: str = "2026-05-01T14:00:00Z") -> Notification:
    return Notification(id=f"{match_id}:{seq}:wicket:p{seq}", match_id=match_id,
                        kind=Kind.WICKET, priority=Priority.P1, ts=ts, seq=seq, innings=1,
                        over=f"{seq}.1", text=f"WICKET! p{seq} out, caught")


def _produce(settings, topic: str, notes: list[Notification]) -> None:
    from confluent_kafka import Producer

    p = Producer(admin_config(settings))
    for n in notes:
        p.produce(topic, key=n.match_id.encode(), value=n.encode())
    assert p.flush(10) == 0


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _running(settings, topic: str, max_attempts: int = 6):
    config = NotifierConfig(topic=topic, group=f"g-{topic}", start="earliest",
                            policy=RetryPolicy(max_attempts=max_attempts, base_s=0.02, cap_s=0.2),
                            refresh_s=0.2, hold_tick_s=0.05, gateway_check_s=0.5,
                            allow_hosts=("127.0.0.1",))  # the receivers are on loopback
    notifier = Notifier(settings, config)
    task = asyncio.create_task(notifier.run())
    try:
        await _until(lambda: notifier.ready, 30)
        yield notifier
    finally:
        notifier.stop.set()
        await asyncio.wait_for(task, 30)


async def test_failing_receiver_gets_each_notification_once_retractions_included(
        kafka_stack, redis_sync, topic):
    settings = kafka_stack
    match_id = f"test-deliv-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(fail_first=2)
    await receiver.start()
    sub = subscriptions.make(receiver.url, SECRET, match_id=match_id)
    subscriptions.add(redis_sync, sub)
    n1, n2, n3, n4 = (_note(match_id, s) for s in (1, 2, 3, 4))
    r2 = retraction(n2, "2026-05-01T14:05:00Z", 10)
    r4 = retraction(n4, "2026-05-01T14:05:00Z", 11)
    try:
        async with _running(settings, topic):
            # n4 is withdrawn before it could go out: neither it nor its retraction is sent.
            _produce(settings, topic, [n1, n2, n3, n4, r4, n1])
            await _until(lambda: {n1.id, n2.id, n3.id} <= set(receiver.accepted))
            _produce(settings, topic, [r2, n2])       # a correction, and a redelivered n2
            await _until(lambda: r2.id in receiver.accepted)
            await asyncio.sleep(1.0)
        async with _running(settings, topic):            # a restart re-reads nothing new
            _produce(settings, topic, [n3, r2])
            await asyncio.sleep(1.5)
    finally:
        await receiver.stop()
        subscriptions.remove(redis_sync, sub.id)
    assert Counter(receiver.accepted) == {n1.id: 1, n2.id: 1, n3.id: 1, r2.id: 1}
    assert receiver.attempts[n1.id] == 3          # two failures, then accepted once
    assert n4.id not in receiver.attempts and r4.id not in receiver.attempts


async def test_hopeless_receiver_is_dead_lettered(kafka_stack, redis_sync, topic):
    settings = kafka_stack
    match_id = f"test-dlq-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(fail_first=10**6)
    await receiver.start()
    sub = subscriptions.make(receiver.url, SECRET, match_id=match_id)
    subscriptions.add(redis_sync, sub)
    n1 = _note(match_id, 1)
    try:
        async with _running(settings, topic, max_attempts=3):
            _produce(settings, topic, [n1])
            await _until(lambda: receiver.attempts[n1.id] >= 3)
            await asyncio.sleep(0.5)
    finally:
        await receiver.stop()
        subscriptions.remove(redis_sync, sub.id)
    assert receiver.attempts[n1.id] == 3
    rows = redis_sync.xrevrange(RedisKeys.webhook_dead_letters, count=200)
    mine = [f for _, f in rows if f[b"id"] == n1.id.encode()]
    assert mine and mine[0][b"attempts"] == b"3" and mine[0][b"reason"].startswith(b"HTTP 500")


async def test_spoiler_hold_releases_as_the_playhead_passes_each_ball(kafka_stack, redis_sync,
                                                                      topic):
    settings = kafka_stack
    match_id = f"test-spoil-{uuid.uuid4().hex[:8]}"
    session = f"sess-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(fail_first=0)
    await receiver.start()
    sub = subscriptions.make(receiver.url, SECRET, match_id=match_id, no_spoilers=True,
                             session_id=session)
    subscriptions.add(redis_sync, sub)
    notes = [_note(match_id, s, ts=f"2026-05-01T14:00:{10 * s:02d}Z") for s in (1, 2, 3)]
    balls = [int(n.instant.timestamp() * 1000) for n in notes]
    try:
        async with _running(settings, topic):
            _produce(settings, topic, notes)
            await asyncio.sleep(1.0)
            assert receiver.accepted == []                     # no playhead yet: all held
            for i, ball in enumerate(balls):
                redis_sync.hset(RedisKeys.playheads, session, ball - 1)
                await asyncio.sleep(0.5)
                assert receiver.accepted == [n.id for n in notes[:i]]
                redis_sync.hset(RedisKeys.playheads, session, ball)
                await _until(lambda i=i: len(receiver.accepted) == i + 1, 10)
    finally:
        await receiver.stop()
        subscriptions.remove(redis_sync, sub.id)
        redis_sync.hdel(RedisKeys.playheads, session)
    assert receiver.accepted == [n.id for n in notes]


async def test_a_bug_on_one_notification_dead_letters_it_with_its_traceback(
        kafka_stack, redis_sync, topic, monkeypatch):
    """A job that raises (here the routing decision, for one id) is dead-lettered as
    internal_error with its traceback; the notifications after it are delivered."""
    from notifier import worker as worker_module

    settings = kafka_stack
    match_id = f"test-bug-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(fail_first=0)
    await receiver.start()
    sub = subscriptions.make(receiver.url, SECRET, match_id=match_id)
    subscriptions.add(redis_sync, sub)
    n1, n2, n3 = (_note(match_id, s) for s in (1, 2, 3))
    real_decide = worker_module.decide

    def decide(note, **kw):
        if note.id == n2.id:
            raise KeyError("a bug")
        return real_decide(note, **kw)

    monkeypatch.setattr(worker_module, "decide", decide)
    try:
        async with _running(settings, topic) as notifier:
            _produce(settings, topic, [n1, n2, n3])
            await _until(lambda: n3.id in receiver.accepted)
            await _until(lambda: notifier.tracker.in_work() == 0)
            bugs = notifier.metrics.errors.labels("bug")._value.get()
    finally:
        await receiver.stop()
        subscriptions.remove(redis_sync, sub.id)
    assert receiver.accepted == [n1.id, n3.id] and bugs == 1
    rows = redis_sync.xrevrange(RedisKeys.webhook_dead_letters, count=200)
    (mine,) = [f for _, f in rows if f[b"id"] == n2.id.encode()]
    assert mine[b"reason"].startswith(b"internal_error: KeyError")
    assert b"Traceback" in mine[b"traceback"] and b"a bug" in mine[b"traceback"]
