"""End to end on real Redis: at level 1 a gateway pushes P1 notes and score updates, not P2
notes nor "N watching", and counts the P2 it shed as offered load in its stats (what the
degradation controller holds its level on)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas.flags import LEVEL_FLAG, FlagState
from schemas.heartbeats import Watching
from schemas.topology import RedisKeys
from tests.gateway.conftest import connect
from tests.gateway.test_gateway_stack import card, healthy

pytestmark = pytest.mark.stack


def note(priority: str, text: str) -> bytes:
    return orjson.dumps({"type": "notification", "v": 1, "id": text, "kind": "boundary",
                         "priority": priority, "text": text})


async def test_level_1_sheds_p2_end_to_end_and_counts_it(gateway, writer, redis, match_id):
    peer, snap = await healthy(gateway, writer, match_id)
    notes = await connect(gateway.port)
    assert (await notes.subscribe(f"notes:{match_id}"))[-1]["type"] == "subscribed"
    gateway.flags._take(LEVEL_FLAG, 1 << 40, FlagState(value=1))  # as a change from Redis
    gateway.flags._changed()
    await gateway.flags.pushed()
    assert gateway.flags.shed_p2
    watching = Watching(match_id, concurrent=5, views=5, window_start_ms=0,
                        window_end_ms=1, final=False, ts_ms=2)
    try:
        stream = RedisKeys.notifications(match_id)
        await redis.xadd(stream, {"u": note("P2", "four")}, id="1-0")
        await redis.xadd(stream, {"u": note("P1", "wicket")}, id="1-1")
        await redis.xadd(stream, {"u": note("P2", "six")}, id="2-0")
        await redis.xadd(RedisKeys.watching(match_id), {"u": watching.encode()})
        update = await writer.publish(match_id, card(snap["runs"] + 4))
        got = await notes.recv_until(lambda m: m.get("type") == "note", timeout=4)
        assert got[-1]["note"]["text"] == "wicket"
        scores = await peer.recv_until(lambda m: m.get("type") == "update", timeout=4)
        assert scores[-1]["seq"] == update.seq
        await asyncio.sleep(1.5)  # a tick of the watching relay
        assert [m for m in await notes.quiet(0.5) if m.get("type") == "note"] == []
        assert [m for m in await peer.quiet(0.5) if m.get("type") == "watching"] == []
        # two P2 notes to one subscriber, one "watching" to one: offered, not sent
        assert gateway.hub.stats.p2_offered == 3
        assert gateway.feed.shed_notes == 2 and gateway.hub.stats.p2_sent == 0
    finally:
        await redis.delete(RedisKeys.notifications(match_id), RedisKeys.watching(match_id))
        await peer.close()
        await notes.close()
