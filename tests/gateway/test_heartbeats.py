"""Viewers' heartbeats over the WebSocket: validated in the session, forwarded to Kafka."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from gateway.auth import ANONYMOUS
from gateway.limits import Limits
from gateway.server import Gateway
from gateway.session import Beat, Send, Session
from runtime.kafka import client_config
from schemas import protocol as p
from schemas.access import Principal
from schemas.heartbeats import decode as decode_heartbeat
from schemas.topology import VIEWER_HEARTBEATS
from tests.gateway.conftest import connect, make_config
from tests.kafka_access import admin_config


def beat(**over: object) -> dict:
    fields = dict(session_id="s-1", match_id="1370353", region="mumbai", cdn="akamai",
                  bitrate_kbps=2500, buffering_ms=0, playhead_ms=1_685_370_000_000,
                  device="web")
    fields.update(over)
    return fields


def test_a_valid_heartbeat_becomes_a_beat_to_forward():
    out = Session(ANONYMOUS, Limits(), now=0.0).receive(p.heartbeat_message(beat()), 0.0)
    assert out == [Beat(beat())]


@pytest.mark.parametrize("fields, named", [
    (beat(bitrate_kbps=-1), "bitrate_kbps"),
    (beat(session_id=""), "session_id"),
    ({**beat(), "ts_ms": 5}, "exactly"),
    ({k: v for k, v in beat().items() if k != "device"}, "exactly"),
])
def test_a_bad_heartbeat_is_answered_and_not_forwarded(fields, named):
    out = Session(ANONYMOUS, Limits(), now=0.0).receive(p.heartbeat_message(fields), 0.0)
    assert len(out) == 1 and isinstance(out[0], Send)
    doc = orjson.loads(out[0].data)
    assert doc["code"] == "bad_message" and named in doc["message"]


@pytest.mark.stack
async def test_heartbeats_reach_the_topic_stamped_by_the_gateway(settings, redis, tmp_path,
                                                                 kafka_stack):
    from confluent_kafka import Consumer, TopicPartition

    session_id = f"s-{uuid.uuid4().hex[:10]}"
    consumer = Consumer({**admin_config(settings),
                         "group.id": f"t-{session_id}", "enable.auto.commit": False})
    meta = consumer.list_topics(VIEWER_HEARTBEATS.name, timeout=10)
    parts = [TopicPartition(VIEWER_HEARTBEATS.name, i, -1)  # -1: the end, i.e. only new beats
             for i in meta.topics[VIEWER_HEARTBEATS.name].partitions]
    consumer.assign(parts)
    gw = Gateway(make_config(settings, tmp_path, kafka=client_config(settings, Principal.GATEWAY)))
    await gw.start()
    try:
        before = int(time.time() * 1000)
        peer = await connect(gw.port)
        for _ in range(3):
            await peer.send(p.heartbeat_message(beat(session_id=session_id)).decode())
        assert await peer.quiet(0.5) == []  # accepted silently
        await peer.close()
    finally:
        await gw.stop()  # flushes the producer
    got = []
    deadline = time.time() + 15
    while len(got) < 3 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == session_id.encode():
            got.append(decode_heartbeat(msg.value()))
    consumer.close()
    assert len(got) == 3
    assert all(b.match_id == "1370353" and before <= b.ts_ms <= int(time.time() * 1000)
               for b in got)


@pytest.mark.stack
async def test_without_kafka_heartbeats_get_a_clear_error(gateway):
    peer = await connect(gateway.port)
    await peer.send(p.heartbeat_message(beat()).decode())
    msg = await peer.recv()
    assert msg["type"] == "error" and msg["code"] == "unavailable"
    await peer.close()


@pytest.mark.stack
async def test_the_client_library_beats_while_connected(settings, redis, tmp_path, kafka_stack):
    import asyncio

    from gateway.client import GatewayClient

    gw = Gateway(make_config(settings, tmp_path, kafka=client_config(settings, Principal.GATEWAY)))
    await gw.start()
    client = GatewayClient(f"ws://127.0.0.1:{gw.port}/ws", ["match:no-such-match"],
                           heartbeat=lambda: beat(session_id="lib"), heartbeat_interval=0.2)

    async def consume() -> None:
        async for _ in client.events():
            pass

    task = asyncio.ensure_future(consume())
    try:
        for _ in range(50):
            await asyncio.sleep(0.1)
            if gw.beats.forwarded >= 3:
                break
        assert gw.beats.forwarded >= 3 and gw.beats.dropped == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gw.stop()
