"""The scorer ingest API: ``POST /v1/matches/{id}/events`` for scoring apps that cannot speak
Kafka.

A request carries one event (the ``schemas/jsonschema`` JSON, unsigned) and the scorer's bearer
token (``Authorization: Bearer ...``; the registry holds its SHA-256, ``schemas.signing``). The
service checks that the token is a registered scorer's, that the event is valid, is for the
match in the path and claims a source that scorer may claim, then signs it with that scorer's
key and writes it to ``match.events`` as that scorer's Kafka principal. So the worker sees
exactly what it would see from the scorer's own producer, and a token can never speak for
another scorer's source.

Idempotent by ``event_id``: per match, one Lua step (``CLAIM``) records which ``event_id`` holds
which ``seq`` before anything is written, and answers for a request that was already seen:

* ``201 {"status": "accepted", "seq", "event_id"}``: written to ``match.events`` (the worker
  then folds it, or dead-letters it, e.g. on a sequence gap);
* ``200 {"status": "duplicate", ...}``: this ``event_id`` already holds this ``seq``;
* ``409 {"error": "conflict", "seq", "event_id"}``: the ``seq`` holds another ``event_id`` (or
  this ``event_id`` another ``seq``): nothing written;
* ``503 {"error": "in_flight"}`` (Retry-After): the same event is being written right now;
* ``400``/``401``/``403``/``413``: a bad event, no or an unknown token, a source or match the
  scorer may not claim, a body over 64 KiB.

A write that fails releases the claim, so the client's retry is not taken for a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from runtime.redisconn import async_redis
from runtime.scorers import RegistryFile
from schemas import codec
from schemas.events import Event, EventValidationError
from schemas.settings import Settings
from schemas.signing import Registry, Scorer
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys

log = logging.getLogger("stumpcast.ingest")
MAX_BODY = 64 * 1024
CLAIM_TTL_S = 7 * 24 * 3600
PENDING = "~"  # prefix of an event_id claimed but not yet written

# KEYS: the match's seq -> event_id hash, event_id -> seq hash. ARGV: seq, event_id, ttl.
CLAIM = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then return {'held', held} end
local at = redis.call('HGET', KEYS[2], ARGV[2])
if at then return {'reused', at} end
redis.call('HSET', KEYS[1], ARGV[1], '~' .. ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {'claimed', ''}
"""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: int | None = None


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": code, "message": message})


def admit(registry: Registry, token: str | None, match_id: str,
          body: bytes) -> tuple[Scorer, Event] | Answer:
    """Who sends what, or why it is refused (pure)."""
    scorer = registry.by_token(token) if token else None
    if scorer is None:
        return _error(401, "unauthorized", "a registered scorer's bearer token is required")
    if len(body) > MAX_BODY:
        return _error(413, "too_large", f"an event is at most {MAX_BODY} bytes")
    try:
        event = codec.decode(body)
    except EventValidationError as exc:
        return _error(400, "invalid", str(exc))
    if event.match_id != match_id:
        return _error(400, "invalid", f"event is for match {event.match_id!r}, not {match_id!r}")
    if not scorer.allows(event.source):
        return _error(403, "forbidden_source",
                      f"scorer {scorer.id!r} may not claim source {event.source!r}")
    return scorer, event


def verdict(kind: str, value: str, event: Event) -> Answer | None:
    """The answer to a claim that found something already there; None if the claim is ours."""
    ids = {"seq": event.seq, "event_id": event.event_id}
    if kind == "claimed":
        return None
    if kind == "reused":
        return Answer(409, {"error": "conflict", "seq": int(value), "event_id": event.event_id,
                            "message": f"event_id already used at seq {value}"})
    if value == PENDING + event.event_id:
        return Answer(503, {"error": "in_flight", **ids,
                            "message": "this event is being written; retry"}, retry_after=1)
    if value == event.event_id:
        return Answer(200, {"status": "duplicate", **ids})
    return Answer(409, {"error": "conflict", "seq": event.seq,
                        "event_id": value.removeprefix(PENDING),
                        "message": f"seq {event.seq} holds another event_id"})


class Ingest:
    """The shell: Redis claims, one signing producer per scorer, delivery awaited."""

    def __init__(self, settings: Settings, registry: Registry | RegistryFile, redis: Any,
                 producer_for: Callable[[str], Any]) -> None:
        self.settings, self.registry, self.redis = settings, registry, redis
        self.producer_for = producer_for
        self.producers: dict[str, Any] = {}
        self.claim = redis.register_script(CLAIM)
        from prometheus_client import CollectorRegistry, Counter

        self.metrics_registry = CollectorRegistry()
        self.answers = Counter("stumpcast_ingest_answers", "Ingest API answers by HTTP status.",
                               ["status"], registry=self.metrics_registry)

    async def answer(self, token: str | None, match_id: str, body: bytes) -> Answer:
        """``post``, counted by status."""
        answer = await self.post(token, match_id, body)
        self.answers.labels(str(answer.status)).inc()
        return answer

    async def post(self, token: str | None, match_id: str, body: bytes) -> Answer:
        registry = self.registry
        if isinstance(registry, RegistryFile):
            registry = registry.current()  # a revoked token stops working without a restart
        admitted = admit(registry, token, match_id, body)
        if isinstance(admitted, Answer):
            return admitted
        scorer, event = admitted
        keys = [RedisKeys.ingest_seqs(match_id), RedisKeys.ingest_ids(match_id)]
        kind, value = await self.claim(keys=keys, args=[event.seq, event.event_id, CLAIM_TTL_S])
        answer = verdict(_text(kind), _text(value), event)
        if answer is not None:
            return answer
        try:
            await self._write(scorer.id, event)
        except Exception as exc:  # noqa: BLE001 - any failure: release, let the client retry
            await self.redis.hdel(keys[0], event.seq)
            await self.redis.hdel(keys[1], event.event_id)
            log.warning("ingest write failed", extra={"match_id": match_id, "seq": event.seq,
                                                      "error": str(exc)})
            return Answer(503, {"error": "unavailable", "message": "not written; retry"}, 2)
        await self.redis.hset(keys[0], event.seq, event.event_id)
        return Answer(201, {"status": "accepted", "seq": event.seq, "event_id": event.event_id})

    async def _write(self, scorer_id: str, event: Event) -> None:
        if scorer_id not in self.producers:
            self.producers[scorer_id] = self.producer_for(scorer_id)
        producer = self.producers[scorer_id]
        before = len(producer.failed)
        producer.send(event)
        left = await asyncio.to_thread(producer.flush, 10.0)
        if left or len(producer.failed) > before:
            raise RuntimeError(producer.failed[-1] if producer.failed else "delivery timed out")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


async def run(settings: Settings) -> None:
    """Serve the ingest API (and /metrics /healthz /readyz) until cancelled."""
    from aiohttp import web

    from runtime.endpoints import Health, application, serve
    from streams.producer import scorer_producer

    registry = RegistryFile(settings.scorer_registry, settings.scorer_registry_check)
    redis = async_redis(settings, RedisUser.INGEST)
    ingest = Ingest(settings, registry, redis, lambda s: scorer_producer(settings, s))

    async def events(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_BODY + 1)
        answer = await ingest.answer(bearer(request.headers.get("Authorization")),
                                   request.match_info["match_id"], body)
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else {}
        return web.Response(body=orjson.dumps(answer.body), status=answer.status,
                            content_type="application/json", headers=headers)

    health = Health.of_registry(ingest.metrics_registry, ready=lambda: True)
    app = application(health)
    app.router.add_post("/v1/matches/{match_id}/events", events)
    runner = await serve(app, settings.ingest_port, settings.ingest_host)
    log.info("ingest listening", extra={"port": settings.ingest_port})
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()
        await redis.aclose()
