"""The scorer ingest API on the real Redis and Kafka: tokens, sources, idempotency."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtime.redisconn import async_redis, sync_redis
from runtime.secrets import scorer_token_path
from schemas import codec
from schemas.settings import Settings
from schemas.signing import Registry, verify
from schemas.store_access import RedisUser
from schemas.topology import MATCH_EVENTS, RedisKeys
from streams import cricsheet
from streams.ingest import Ingest
from streams.producer import scorer_producer
from tests.kafka_access import admin_config
from tests.streams.test_pipeline_stack import FILES

pytestmark = pytest.mark.stack


@pytest.fixture
async def ingest(kafka_stack: Settings, redis_stack: Settings) -> AsyncIterator[Ingest]:

    r = async_redis(redis_stack, RedisUser.ADMIN)
    yield Ingest(kafka_stack, Registry.load(kafka_stack.scorer_registry), r,
                 lambda s: scorer_producer(kafka_stack, s))
    await r.aclose()


def _token(settings: Settings, scorer_id: str) -> str:
    return scorer_token_path(settings.secrets_dir, scorer_id).read_text().strip()


def _read_back(settings: Settings, match_id: str, partition_hint: Any = None) -> list[bytes]:
    from confluent_kafka import Consumer, TopicPartition

    from schemas.topology import partition_for

    c = Consumer({**admin_config(settings), "group.id": "unused", "enable.auto.commit": False})
    p = partition_for(match_id.encode(), MATCH_EVENTS.partitions)
    low, high = c.get_watermark_offsets(TopicPartition(MATCH_EVENTS.name, p), timeout=10)
    c.assign([TopicPartition(MATCH_EVENTS.name, p, max(low, high - 50))])
    out = []
    while True:
        msg = c.poll(3)
        if msg is None:
            break
        if not msg.error() and msg.key() == match_id.encode():
            out.append(msg.value())
        if msg.offset() >= high - 1:
            break
    c.close()
    return out


async def test_ingest_signs_as_the_token_s_scorer_and_is_idempotent(ingest: Ingest,
                                                                    kafka_stack: Settings,
                                                                    attacks: Any) -> None:
    m = f"ing{uuid.uuid4().hex[:6]}"
    events = cricsheet.import_match(cricsheet.load(FILES[0]), m)
    desk = [dataclasses.replace(e, source="scorer:desk") for e in events[:3]]
    token = _token(kafka_stack, "desk")
    first = await ingest.post(token, m, codec.encode(desk[0]))
    assert (first.status, first.body["seq"]) == (201, 1)
    again = await ingest.post(token, m, codec.encode(desk[0]))
    assert (again.status, again.body["status"]) == (200, "duplicate")
    other = dataclasses.replace(desk[0], event_id=f"{m}-other")
    conflict = await ingest.post(token, m, codec.encode(other))
    attacks.check("ingest: another event_id at an accepted seq", conflict.status == 409,
                  conflict)
    assert conflict.body["event_id"] == desk[0].event_id
    moved = dataclasses.replace(desk[1], event_id=desk[0].event_id)
    reused = await ingest.post(token, m, codec.encode(moved))
    attacks.check("ingest: one event_id at a second seq", reused.status == 409, reused)
    [wire] = _read_back(kafka_stack, m)  # written once, signed by the desk
    scorer, body = verify(wire, Registry.load(kafka_stack.scorer_registry))
    assert scorer.id == "desk" and codec.decode(body) == desk[0]


async def test_ingest_refuses_strangers_and_other_scorers_sources(ingest: Ingest,
                                                                  kafka_stack: Settings,
                                                                  attacks: Any) -> None:

    m = f"ing{uuid.uuid4().hex[:6]}"
    event = cricsheet.import_match(cricsheet.load(FILES[0]), m)[0]  # source "cricsheet"
    desk_token, body = _token(kafka_stack, "desk"), codec.encode(event)
    cases = {
        "ingest: no token": (None, m, body, 401),
        "ingest: a guessed token": ("x" * 43, m, body, 401),
        "ingest: the desk's token for the cricsheet source": (desk_token, m, body, 403),
        "ingest: an event for another match than the path": (
            desk_token, f"{m}-other", codec.encode(dataclasses.replace(
                event, source="scorer:desk")), 400),
        "ingest: a body of 1 MiB": (desk_token, m, b"{" + b" " * (1 << 20) + b"}", 413),
    }
    for name, (token, match_id, raw, status) in cases.items():
        answer = await ingest.post(token, match_id, raw)
        attacks.check(name, answer.status == status, answer)
    r = sync_redis(kafka_stack, RedisUser.ADMIN)
    assert not r.exists(RedisKeys.ingest_seqs(m)), "a refused request claimed a seq"
    assert _read_back(kafka_stack, m) == []


async def test_the_ingest_service_over_http(kafka_stack: Settings, redis_stack: Settings) -> None:
    """``stumpcast ingest serve``'s app end to end: the route, the bearer header, the JSON."""
    import asyncio
    import socket

    import aiohttp

    from streams.ingest import run

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = dataclasses.replace(kafka_stack, ingest_port=port)
    task = asyncio.create_task(run(settings))
    m = f"ing{uuid.uuid4().hex[:6]}"
    event = dataclasses.replace(
        cricsheet.import_match(cricsheet.load(FILES[0]), m)[0], source="scorer:desk")
    url = f"http://127.0.0.1:{port}/v1/matches/{m}/events"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(50):  # until it listens
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            auth = {"Authorization": f"Bearer {_token(kafka_stack, 'desk')}"}
            async with http.post(url, data=codec.encode(event), headers=auth) as r:
                assert (r.status, (await r.json())["seq"]) == (201, 1)
            async with http.post(url, data=codec.encode(event)) as r:
                assert r.status == 401
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert 'stumpcast_ingest_answers_total{status="201"} 1.0' in await r.text()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
