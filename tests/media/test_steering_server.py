"""The steering server: its answers, and the whole loop on the real stack.

The stack test writes analytics windows to the real ``analytics.concurrency`` topic (as the
analytics worker does) and overrides with the real CLI into Redis, and reads the manifests a
player would get. Each test uses a region of its own, so other windows on the topic (other
tests, other runs) never count as its evidence.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from media.steering import Policy
from media.steering_server import SteeringConfig, SteeringServer
from runtime.kafka import client_config
from runtime.redisconn import credentials, sync_redis
from schemas.access import Principal
from schemas.heartbeats import ConcurrencyRecord
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import ANALYTICS_CONCURRENCY, RedisKeys
from tests.kafka_access import admin_config

A, B = "cdn-a", "cdn-b"


def server(**kw: Any) -> SteeringServer:
    return SteeringServer(SteeringConfig(Policy((A, B)), port=0, ttl=7, kafka_bootstrap=None,
                                         redis_url=None, **kw))


def test_a_first_request_gets_a_bucket_its_reload_uri_keeps() -> None:
    s = server()
    status, doc = s.answer({"region": "south", "_HLS_pathway": A, "_HLS_throughput": "1"})
    assert status == 200 and doc["VERSION"] == 1 and doc["TTL"] == 7
    assert doc["PATHWAY-PRIORITY"] == [A, B]
    assert doc["RELOAD-URI"].startswith("steering?region=south&bucket=")
    bucket = int(doc["RELOAD-URI"].rsplit("=", 1)[1])
    assert 0 <= bucket < 100
    assert s.answer({"region": "south", "bucket": "42"})[1]["RELOAD-URI"] == \
        "steering?region=south&bucket=42"
    assert s.answer({})[1]["RELOAD-URI"].startswith("steering?region=unknown&bucket=")


def test_bad_input_is_a_400_that_says_what_is_wrong() -> None:
    s = server()
    assert s.answer({"region": "South Side"}) == (400, {
        "error": "bad_region", "message": "region: 1-32 of a-z 0-9 _ -"})
    for bad in ("100", "-1", "x", ""):
        assert s.answer({"region": "south", "bucket": bad})[0] == 400, bad


def record(region: str, cdn: str, end_ms: int, kbps: float, ratio: float = 0.0,
           match_id: str = "m") -> ConcurrencyRecord:
    return ConcurrencyRecord(match_id, region, cdn, end_ms - 4000, end_ms, concurrent=3,
                             beats=6, avg_bitrate_kbps=kbps, rebuffering_ratio=ratio,
                             mode="exact", complete=True)


@pytest.fixture
async def running(kafka_stack: Settings, redis_stack: Settings) -> AsyncIterator[tuple[str, Any]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = SteeringConfig(Policy((A, B), hold_down_ms=60_000), port=port, ttl=1,
                         kafka_bootstrap=client_config(kafka_stack, Principal.ANALYST),
                         redis_url=redis_stack.redis_url, tick_s=0.2,
                         redis_auth=credentials(redis_stack, RedisUser.MEDIA))
    steering = SteeringServer(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(steering.run(stop))
    url = f"http://127.0.0.1:{cfg.port}"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    yield url, steering
    stop.set()
    await task


async def priority(url: str, region: str, bucket: int = 0) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{url}/v1/steering", params={"region": region, "bucket": str(bucket)}) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        return list((await resp.json(content_type=None))["PATHWAY-PRIORITY"])


async def wait_for_priority(url: str, region: str, want: list[str], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await priority(url, region) == want:
            return time.monotonic() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"{region}: priority never became {want} in {timeout} s")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUMPCAST_REDIS_URL": settings.redis_url}
    return subprocess.run([sys.executable, "-m", "stumpcast", "steering", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.stack
async def test_windows_from_kafka_move_a_region_and_operators_override(
        running: tuple[str, Any], kafka_stack: Settings) -> None:
    from confluent_kafka import Producer

    url, steering = running
    region = f"t{uuid.uuid4().hex[:10]}"
    other = f"{region}x"
    producer = Producer(admin_config(kafka_stack))
    now = int(time.time() * 1000)
    windows = [record(region, A, now - 20_000 + 2000 * i, 2500) for i in range(5)]
    windows += [record(region, A, now - 10_000, 900), record(region, A, now - 8000, 900),
                record(region, A, now - 6000, 900, match_id="m2")]
    windows += [record(other, A, now - 6000, 2500)]
    for rec in windows:
        producer.produce(ANALYTICS_CONCURRENCY.name, rec.encode(), key=rec.key)
    producer.flush(10)
    took = await wait_for_priority(url, region, [B, A], timeout=20)
    assert took < 20
    assert await priority(url, other) == [A, B]  # a region with good windows stays
    events = [e for e in steering.optimizer.snapshot()["events"] if e["region"] == region]
    assert events and events[0]["what"].startswith(f"moved {A} -> {B}: rebuffering 0.0%, 900")

    settings = kafka_stack
    try:
        out = cli(settings, "pin", A, "--region", region)
        assert out.returncode == 0 and out.stdout.strip() == f"pinned {A} first for {region}"
        await wait_for_priority(url, region, [A, B], timeout=5)
        assert cli(settings, "clear", "--pin", region).returncode == 0
        await wait_for_priority(url, region, [B, A], timeout=5)
        assert cli(settings, "drain", B).returncode == 0
        await wait_for_priority(url, region, [A, B], timeout=5)
        assert await priority(url, other) == [A, B]
    finally:
        cli(settings, "clear", "--drain", B)
        cli(settings, "clear", "--pin", region)
    bad = cli(settings, "pin", "cdn-z")
    assert bad.returncode == 1 and "unknown CDN 'cdn-z'" in bad.stderr
    bad = cli(settings, "pin", A, "--region", "Not A Region")
    assert bad.returncode == 1 and "region 'Not A Region'" in bad.stderr

    left = sync_redis(settings, RedisUser.ADMIN).hgetall(RedisKeys.steering_overrides)
    assert not any(region.encode() in k for k in left)
