"""The "N watching" counter reaches a match's subscribers unchanged, and only theirs."""

from __future__ import annotations

import orjson
import pytest

from schemas.heartbeats import Watching, decode_watching
from schemas.topology import RedisKeys
from tests.gateway.conftest import connect
from tests.gateway.test_gateway_stack import card, healthy

pytestmark = pytest.mark.stack


async def test_watching_counter_is_relayed_to_match_subscribers(gateway, writer, redis, match_id):
    peer, _ = await healthy(gateway, writer, match_id)
    other_id = match_id + "x"
    await writer.publish(other_id, card(1))
    bystander = await connect(gateway.port)
    assert (await bystander.subscribe(f"match:{other_id}"))[-1]["type"] == "subscribed"
    await bystander.recv()  # its snapshot
    record = Watching(match_id, concurrent=41_234, views=90_000, window_start_ms=0,
                      window_end_ms=20_000, final=True, ts_ms=20_001)
    await redis.xadd(RedisKeys.watching(match_id), {"u": record.encode()})
    try:
        got = await peer.recv_until(lambda m: m.get("type") == "watching", timeout=4)
        assert decode_watching(orjson.dumps(got[-1])) == record
        assert [m for m in await bystander.quiet(1.5) if m.get("type") == "watching"] == []
        # An unchanged count is not sent again on every tick.
        assert [m for m in await peer.quiet(1.5) if m.get("type") == "watching"] == []
    finally:
        await redis.delete(RedisKeys.watching(match_id))
        await peer.close()
        await bystander.close()

