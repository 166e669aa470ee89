"""The gateway reading what production writes: views committed by the streams worker's view
store (``streams.viewstore.RedisViewStore``, the engine's ``view_write``), not by the bench
writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.server import Gateway
from schemas.topology import RedisKeys
from streams.engine import view_write
from streams.viewstore import RedisViewStore, Status, next_epoch
from tests.gateway.conftest import connect

pytestmark = pytest.mark.stack
LATENCY = "stumpcast_gateway_delivery_latency_seconds"
TS = "2023-05-29T14:00:00.000Z"


def card(runs: int) -> dict[str, Any]:
    return {"match_id": "m", "runs": runs, "batters": [{"name": "Gill", "runs": runs}]}


@pytest.fixture
async def store(redis: Any, match_id: str) -> AsyncIterator[RedisViewStore]:
    yield RedisViewStore(redis)
    await redis.delete(RedisKeys.card(match_id), RedisKeys.position(match_id),
                       RedisKeys.history(match_id), RedisKeys.notifications(match_id))
    await redis.zrem(RedisKeys.live_matches, match_id)


def latency(gw: Gateway, sample: str) -> float:
    value = gw.metrics.registry.get_sample_value(f"{LATENCY}_{sample}",
                                                 {"worker": gw.metrics.worker})
    return value or 0.0


async def test_delivery_latency_of_views_the_worker_commits(
        gateway: Gateway, store: RedisViewStore, match_id: str) -> None:
    now_ms = time.time_ns() // 1_000_000
    epoch = next_epoch(None, now_ms)  # what the engine gives a new match
    first = view_write(match_id, epoch, 1, 0, TS, None, card(1), (), now_ms)
    assert (await store.commit(first)).status is Status.APPLIED
    peer = await connect(gateway.port)
    assert (await peer.subscribe(f"match:{match_id}"))[-1]["type"] == "subscribed"
    assert (await peer.recv())["type"] == "snapshot"
    for seq in (2, 3):
        w = view_write(match_id, epoch, seq, seq - 1, TS, card(seq - 1), card(seq), (), now_ms)
        assert (await store.commit(w)).status is Status.APPLIED
        msg = await peer.recv()
        # The commit time stays in Redis: the update on the wire is the engine's bytes.
        assert orjson.dumps(msg) == w.update
    for _ in range(50):  # observed right after the fanout that reached the client
        if latency(gateway, "count") >= 2:
            break
        await asyncio.sleep(0.01)
    count, total = latency(gateway, "count"), latency(gateway, "sum")
    assert count >= 1
    assert -0.1 < total / count < 5.0  # Redis TIME and the gateway's clock: one host here
    await peer.close()
