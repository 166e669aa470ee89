"""The steering server: answers players' steering requests from the optimizer's decisions.

Thin shell over ``media.steering`` (pure). Three loops and one route:

* ``GET /v1/steering?region=R[&bucket=B]`` (hls.js adds ``_HLS_pathway`` and
  ``_HLS_throughput``): the steering manifest, from memory, no I/O per request. A player's
  first request gets a random bucket (0-99) that its ``RELOAD-URI`` then carries, so a region
  can send a stable share of its players back to a CDN it is probing. Never cached
  (``no-store``): the answer is per player. ``GET /v1/steering/state``: decisions, health and
  events as JSON (``stumpcast steering status``).
* the analytics worker's windows from the compacted ``analytics.concurrency`` topic (no group,
  read from the start: the newest window of every match, region and CDN is there), summed over
  matches (``steering.combine``) and fed to the optimizer;
* the operators' overrides from the Redis hash ``RedisKeys.steering_overrides``, once a second;
  if Redis is down the last ones stay in force;
* the optimizer's clock, once a second.

429 is never sent: hls.js 1.7.4 stops reloading the manifest for good on a 429 (edge.md §0.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from media.steering import (
    BUCKETS,
    Optimizer,
    Overrides,
    Policy,
    combine,
    manifest,
    valid_region,
)
from runtime import redisconn
from runtime.endpoints import Health, Readiness, application, serve
from schemas.heartbeats import decode_concurrency
from schemas.topology import ANALYTICS_CONCURRENCY, RedisKeys

log = logging.getLogger("stumpcast.media.steering")
CONTENT_TYPE = "application/vnd.apple.steering-list"  # Apple's authoring spec; hls.js: any
MAX_WINDOW_AGE_MS = 60_000
SETTLE_MS = 500
DEFAULT_REGION = "unknown"   # what a player that names no region reports in its heartbeats


@dataclass
class SteeringConfig:
    policy: Policy
    port: int
    ttl: int
    # Kafka: runtime.kafka.client_config of a principal that reads analytics.concurrency
    # (`stumpcast steering serve`: analyst), or a bare bootstrap string (no SASL)
    kafka_bootstrap: str | Mapping[str, Any] | None
    redis_url: str | None
    host: str = "127.0.0.1"
    redis_auth: tuple[str, str] | None = None  # runtime.redisconn.credentials(s, "media")
    redis_cluster: tuple[str, ...] = ()  # Redis Cluster seed nodes; (): the one of redis_url
    tick_s: float = 1.0


class SteeringMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("stumpcast_steering_requests", "Steering manifests served, by "
                                "region and first pathway.", ["region", "pathway"], registry=r)
        self.rejected = Counter("stumpcast_steering_rejected", "Steering requests refused "
                                "(bad region or bucket).", registry=r)
        self.windows = Counter("stumpcast_steering_windows", "Analytics windows fed to the "
                               "optimizer.", registry=r)
        self.changes = Counter("stumpcast_steering_changes", "Route changes (moves, probe "
                               "steps, returns).", ["region"], registry=r)
        self.errors = Counter("stumpcast_steering_errors", "Kafka or Redis errors, by source.",
                              ["source"], registry=r)
        self.share = Gauge("stumpcast_steering_probe_share", "Percent of a region's players "
                           "sent back to the CDN it left.", ["region"], registry=r)


class SteeringServer:
    def __init__(self, cfg: SteeringConfig) -> None:
        self.cfg = cfg
        self.optimizer = Optimizer(cfg.policy)
        self.overrides = Overrides()
        self.metrics = SteeringMetrics()
        self.pending: list[tuple[int, Any]] = []  # (arrival ms, ConcurrencyRecord)
        self.consuming = cfg.kafka_bootstrap is None
        self.rng = random.Random()

    # -- HTTP ----------------------------------------------------------------------------------

    def answer(self, query: Any) -> tuple[int, dict[str, Any]]:
        """(status, body) of one steering request. Pure but for the random first bucket."""
        region = query.get("region") or DEFAULT_REGION
        raw_bucket = query.get("bucket")
        if not valid_region(region):
            return 400, {"error": "bad_region", "message": "region: 1-32 of a-z 0-9 _ -"}
        if raw_bucket is None:
            bucket = self.rng.randrange(BUCKETS)
        elif raw_bucket.isdigit() and int(raw_bucket) < BUCKETS:
            bucket = int(raw_bucket)
        else:
            return 400, {"error": "bad_bucket", "message": f"bucket: 0-{BUCKETS - 1}"}
        order = self.optimizer.priority(region, bucket, self.overrides)
        reload_uri = "steering?" + urlencode({"region": region, "bucket": bucket})
        self.metrics.requests.labels(region, order[0]).inc()
        return 200, manifest(order, self.cfg.ttl, reload_uri)

    async def steering(self, request: web.Request) -> web.Response:
        status, body = self.answer(request.query)
        if status != 200:
            self.metrics.rejected.inc()
        headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
        ctype = CONTENT_TYPE if status == 200 else "application/json"
        return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                            content_type=ctype)

    async def state(self, _request: web.Request) -> web.Response:
        doc = {**self.optimizer.snapshot(), "overrides": {
            "pins": dict(self.overrides.pins), "drained": sorted(self.overrides.drained)},
               "ttl": self.cfg.ttl, "now_ms": _now_ms()}
        return web.Response(body=orjson.dumps(doc), content_type="application/json",
                            headers={"Cache-Control": "no-store",
                                     "Access-Control-Allow-Origin": "*"})

    def app(self) -> web.Application:
        health = Health.of_registry(self.metrics.registry, self.ready)
        app = application(health)
        app.router.add_get("/v1/steering", self.steering)
        app.router.add_get("/v1/steering/state", self.state)
        return app

    def ready(self) -> Readiness:
        problems = [] if self.consuming else ["analytics.concurrency not assigned yet"]
        return Readiness(not problems, {"problems": problems})

    # -- loops ---------------------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """Feed what arrived, then let the optimizer decide.

        A record waits ``SETTLE_MS`` (0.5 s) after it arrived: the topic's partitions are read in no
        particular order (at start, its whole history at once), and the optimizer ignores a
        window older than one it has seen, so what arrived together is sorted before it is
        fed. Windows older than a minute are old news, not evidence."""
        ready = [r for at, r in self.pending if at <= now_ms - SETTLE_MS]
        self.pending = [(at, r) for at, r in self.pending if at > now_ms - SETTLE_MS]
        fresh = [r for r in ready if r.window_end_ms >= now_ms - MAX_WINDOW_AGE_MS]
        for q in combine(fresh):
            self.optimizer.observe(q)
            self.metrics.windows.inc()
        for event in self.optimizer.tick(now_ms):
            self.metrics.changes.labels(event.region).inc()
            log.info("steering", extra={"region": event.region, "change": event.what})
        for region, route in self.optimizer.routes.items():
            self.metrics.share.labels(region).set(route.share)

    async def run(self, stop: asyncio.Event) -> None:
        runner = await serve(self.app(), self.cfg.port, self.cfg.host)
        tasks = [asyncio.create_task(self._ticker(stop))]
        if self.cfg.kafka_bootstrap:
            tasks.append(asyncio.create_task(self._windows(stop, self.cfg.kafka_bootstrap)))
        if self.cfg.redis_url:
            tasks.append(asyncio.create_task(self._overrides(stop, self.cfg.redis_url)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.step(_now_ms())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.tick_s)

    async def _windows(self, stop: asyncio.Event, bootstrap: str | Mapping[str, Any]) -> None:
        consumer = await asyncio.to_thread(_window_consumer, bootstrap)
        self.consuming = True
        try:
            while not stop.is_set():
                msgs = await asyncio.to_thread(consumer.consume, 500, 0.5)
                for msg in msgs:
                    if msg.error():
                        self.metrics.errors.labels("kafka").inc()
                        continue
                    try:
                        self.pending.append((_now_ms(), decode_concurrency(msg.value() or b"")))
                    except (ValueError, TypeError) as exc:
                        self.metrics.errors.labels("record").inc()
                        log.debug("not a concurrency record", extra={"error": str(exc)})
        finally:
            await asyncio.to_thread(consumer.close)

    async def _overrides(self, stop: asyncio.Event, url: str) -> None:
        client = redisconn.connect(url, self.cfg.redis_auth, asyncio=True, socket_timeout=2,
                                   cluster=self.cfg.redis_cluster,
                                   decode_responses=True)
        try:
            while not stop.is_set():
                try:
                    raw = await client.hgetall(RedisKeys.steering_overrides)
                    self.overrides = Overrides.from_fields({str(k): str(v)
                                                            for k, v in raw.items()})
                except Exception as exc:  # noqa: BLE001 - Redis down: keep the last overrides
                    self.metrics.errors.labels("redis").inc()
                    log.debug("overrides not read", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            await client.aclose()


def _window_consumer(bootstrap: str | Mapping[str, Any]) -> Any:
    """A group-less consumer of every partition of ``analytics.concurrency`` from the start."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = ANALYTICS_CONCURRENCY.name
    kafka = {"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap)
    # group-less (assigned, nothing committed); the id is in the analysts' prefix for the ACLs
    consumer = Consumer({**kafka, "group.id": "analyst-steering",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    meta = consumer.list_topics(topic, timeout=10)
    parts = meta.topics[topic].partitions if topic in meta.topics else {}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    return consumer


def _now_ms() -> int:
    return int(time.time() * 1000)
