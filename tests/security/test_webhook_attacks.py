"""Webhooks as an SSRF vector, against a real notifier (Kafka, Redis, HTTP on loopback).

The notifier's allow-list holds 127.0.0.2 only (Linux routes all of 127/8 to lo), where a
receiver accepts one hook and redirects others; a "victim" service listens on 127.0.0.1 and
must never be reached, directly, by name, in another notation or through a redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from notifier import subscriptions
from notifier.retry import RetryPolicy
from notifier.worker import Notifier, NotifierConfig
from schemas.topology import RedisKeys
from tests.notifier.test_notifier_stack import _note, _produce, redis_sync, topic  # noqa: F401

pytestmark = pytest.mark.stack
SECRET = "sec-suite-webhook-secret"


class Server:
    """Counts requests by path; ``routes`` maps a path to (status, Location or None)."""

    def __init__(self, host: str, routes: dict[str, tuple[int, str | None]]) -> None:
        self.host, self.routes = host, routes
        self.hits: list[str] = []
        self.port = 0
        self.runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def any_path(req: web.Request) -> web.Response:
            self.hits.append(req.path)
            status, location = self.routes.get(req.path, (204, None))
            return web.Response(status=status,
                                headers={"Location": location} if location else {})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[Server, Server]]:
    victim = Server("127.0.0.1", {})
    relay = Server("127.0.0.2", {})
    for s in (victim, relay):
        await s.start()
    relay.routes = {"/to-loopback": (302, victim.url("/admin")),
                    "/to-metadata": (307, "http://169.254.169.254/latest/meta-data/"),
                    "/to-name": (301, f"http://localhost:{victim.port}/admin")}
    try:
        yield victim, relay
    finally:
        for s in (victim, relay):
            await s.runner.cleanup()


async def test_webhooks_cannot_reach_internal_addresses(kafka_stack: Any, redis_sync: Any,  # noqa: F811
                                                        topic: str, attacks: Any) -> None:  # noqa: F811
    match_id = f"sec-hook-{uuid.uuid4().hex[:8]}"
    async with servers() as (victim, relay):
        targets = {
            "webhook: 127.0.0.1": victim.url("/hook"),
            "webhook: localhost (refused after DNS)": f"http://localhost:{victim.port}/hook",
            "webhook: IPv4-mapped IPv6 loopback": f"http://[::ffff:127.0.0.1]:{victim.port}/",
            "webhook: 169.254.169.254 (cloud metadata)":
                "http://169.254.169.254/latest/meta-data/iam/",
            "webhook: a private address": "http://10.11.12.13/hook",
            "webhook: a redirect to 127.0.0.1": relay.url("/to-loopback"),
            "webhook: a redirect to 169.254.169.254": relay.url("/to-metadata"),
            "webhook: a redirect to localhost": relay.url("/to-name"),
        }
        subs = {name: subscriptions.make(url, SECRET, match_id=match_id)
                for name, url in targets.items()}
        good = subscriptions.make(relay.url("/ok"), SECRET, match_id=match_id)
        for sub in [*subs.values(), good]:
            subscriptions.add(redis_sync, sub)
        redis_sync.hset(RedisKeys.webhooks, f"bad-{match_id}", b"{not json")  # a broken entry
        config = NotifierConfig(topic=topic, group=f"g-{topic}", start="earliest",
                                policy=RetryPolicy(max_attempts=2, base_s=0.02, cap_s=0.1),
                                refresh_s=0.2, allow_hosts=("127.0.0.2",))
        notifier = Notifier(kafka_stack, config)
        task = asyncio.create_task(notifier.run())
        try:
            _produce(kafka_stack, topic, [_note(match_id, 1)])
            dead = await _dead_letters(redis_sync, {s.id for s in subs.values()}, 30)
            await _wait(lambda: "/ok" in relay.hits, 10)
        finally:
            notifier.stop.set()
            await asyncio.wait_for(task, 30)
            for sub in [*subs.values(), good]:
                subscriptions.remove(redis_sync, sub.id)
            redis_sync.hdel(RedisKeys.webhooks, f"bad-{match_id}")
        for name, sub in subs.items():
            attacks.check(name, sub.id in dead and not victim.hits, (dead.get(sub.id),
                                                                      victim.hits))
        attacks.check("webhook: a malformed subscription stops delivery to the others",
                      "/ok" in relay.hits)


async def _dead_letters(r: Any, ids: set[str], timeout: float) -> dict[str, str]:
    """Subscription id -> reason of its dead letters, once every id in ``ids`` has one."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ids <= set(found):
        for _, fields in r.xrevrange(RedisKeys.webhook_dead_letters, count=200):
            sid = fields[b"subscription"].decode()
            if sid in ids:
                found[sid] = fields[b"reason"].decode()
        await asyncio.sleep(0.2)
    return found


async def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
