"""The gateway on Redis Cluster (`stack up --nodes 3`'s Redis): snapshots and live updates of
matches whose keys are on different masters. One XREAD over several slots is refused by a
cluster (CROSSSLOT), so the feed reads each match on its own there (``Feed._cluster_read``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bench.gateway.writer import ViewWriter
from gateway.server import Gateway
from runtime.redisconn import async_redis
from schemas import protocol as p
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from tests.gateway.conftest import connect, make_config
from tests.multinode import MultiNode

pytestmark = [pytest.mark.stack]


@pytest.fixture(scope="module")
def cluster(nodes3: MultiNode) -> Settings:
    """The Redis Cluster of the session's `stack up --nodes 3` (``tests/multinode.py``)."""
    return nodes3.settings


@pytest.fixture
async def cluster_writer(cluster: Settings) -> AsyncIterator[ViewWriter]:
    client = async_redis(cluster, RedisUser.ADMIN)
    w = ViewWriter(client)
    yield w
    for match_id in list(w.state):
        await w.delete(match_id)
    await client.aclose()


async def test_the_gateway_follows_matches_on_several_masters(cluster: Settings, tmp_path: Any,
                                                               cluster_writer: ViewWriter
                                                               ) -> None:
    matches = [f"t{uuid.uuid4().hex[:10]}" for _ in range(6)]
    owners = set()
    for m in matches:
        await cluster_writer.publish(m, {"runs": 0})
        owners.add(cluster_writer.redis.get_node_from_key(RedisKeys.card(m)).port)
    gw = Gateway(make_config(cluster, tmp_path, redis_cluster=cluster.redis_cluster))
    await gw.start()
    try:
        assert gw.feed.cluster
        peer = await connect(gw.port)
        for m in matches:
            replies = await peer.subscribe(f"match:{m}")
            assert replies[-1]["type"] == "subscribed"
            snap = await peer.recv()
            assert snap["type"] == "snapshot" and snap["card"] == {"runs": 0}
        for runs in (1, 2, 3):
            for m in matches:
                await cluster_writer.publish(m, {"runs": runs})
        got: dict[str, list[int]] = {m: [] for m in matches}
        while any(len(v) < 3 for v in got.values()):
            msg = await peer.recv(5.0)
            if msg["type"] == "update":
                got[str(p.channel_of(msg)).removeprefix("match:")].append(msg["seq"])
        assert all(v == [2, 3, 4] for v in got.values()), got
        assert len(owners) > 1  # really more than one master
    finally:
        await gw.stop()
