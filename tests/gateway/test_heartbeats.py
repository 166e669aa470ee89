"""Viewers' heartbeats over the WebSocket: validated in the session, forwarded to Kafka."""

from __future__ import annotations

import time

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


NOW = 1_685_370_000.0  # a wall-clock instant (s) not earlier than beat()'s playhead


def subscribed_session(match_id: str = "1370353", **limits: float) -> Session:
    s = Session(ANONYMOUS, Limits(**limits), now=NOW, session_id="issued-1")  # type: ignore[arg-type]
    s.channels.add(f"match:{match_id}")
    return s


def test_a_valid_heartbeat_becomes_a_beat_of_the_socket_s_own_session():
    out = subscribed_session().receive(p.heartbeat_message(beat(session_id="someone")), NOW)
    assert out == [Beat(beat(session_id="issued-1"))]  # whatever session the beat claims


def test_a_beat_for_a_match_the_socket_did_not_subscribe_to_is_refused():
    out = subscribed_session("other").receive(p.heartbeat_message(beat()), NOW)
    assert [orjson.loads(o.data)["code"] for o in out if isinstance(o, Send)] == \
        ["not_subscribed"]


def test_at_most_one_beat_per_interval_and_none_from_the_future():
    s = subscribed_session(heartbeat_min_gap=8.0)
    assert isinstance(s.receive(p.heartbeat_message(beat()), NOW)[0], Beat)
    flood = [s.receive(p.heartbeat_message(beat()), NOW + i * 0.5)[0] for i in range(1, 10)]
    assert all(isinstance(o, Send) and b"rate_limited" in o.data for o in flood[:-1])
    later = s.receive(p.heartbeat_message(beat()), NOW + 8.0)[0]
    assert isinstance(later, Beat)
    ahead = beat(playhead_ms=int((NOW + 3600) * 1000))
    out = s.receive(p.heartbeat_message(ahead), NOW + 20.0)[0]
    assert isinstance(out, Send) and b"in the future" in out.data


@pytest.mark.parametrize("fields, named", [
    (beat(bitrate_kbps=-1), "bitrate_kbps"),
    (beat(session_id=""), "session_id"),
    ({**beat(), "ts_ms": 5}, "exactly"),
    ({k: v for k, v in beat().items() if k != "device"}, "exactly"),
])
def test_a_bad_heartbeat_is_answered_and_not_forwarded(fields, named):
    out = subscribed_session().receive(p.heartbeat_message(fields), NOW)
    assert len(out) == 1 and isinstance(out[0], Send)
    doc = orjson.loads(out[0].data)
    assert doc["code"] == "bad_message" and named in doc["message"]


async def subscribed_peer(gw, writer, match_id, path: str = "/ws"):
    """A peer subscribed to a published match, and the session id the gateway issued it."""
    from tests.gateway.test_gateway_stack import card

    await writer.publish(match_id, card(1))
    peer = await connect(gw.port, path)
    reply = (await peer.subscribe(f"match:{match_id}"))[-1]
    assert reply["type"] == "subscribed" and reply["session"], reply
    await peer.recv()  # the snapshot
    return peer, reply["session"]


@pytest.mark.stack
async def test_heartbeats_reach_the_topic_as_the_socket_s_session(settings, redis, tmp_path,
                                                                  kafka_stack, writer, match_id):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**admin_config(settings),
                         "group.id": f"t-{match_id}", "enable.auto.commit": False})
    meta = consumer.list_topics(VIEWER_HEARTBEATS.name, timeout=10)
    parts = [TopicPartition(VIEWER_HEARTBEATS.name, i, -1)  # -1: the end, i.e. only new beats
             for i in meta.topics[VIEWER_HEARTBEATS.name].partitions]
    consumer.assign(parts)
    gw = Gateway(make_config(settings, tmp_path, kafka=client_config(settings, Principal.GATEWAY),
                             limits=Limits(heartbeat_min_gap=0.0)))
    await gw.start()
    try:
        before = int(time.time() * 1000)
        peer, session = await subscribed_peer(gw, writer, match_id)
        for _ in range(3):  # claiming another viewer's session changes nothing
            await peer.send(p.heartbeat_message(beat(session_id="victim",
                                                     match_id=match_id)).decode())
        assert await peer.quiet(0.5) == []  # accepted silently
        await peer.close()
        again, kept = await subscribed_peer(gw, writer, match_id, f"/ws?session={session}")
        _, fresh = await subscribed_peer(gw, writer, match_id, "/ws?session=made-up.x")
        assert kept == session and fresh != session  # only an issued id is kept
        await again.close()
    finally:
        await gw.stop()  # flushes the producer
    got = []
    deadline = time.time() + 15
    while len(got) < 3 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() in (session.encode(), b"victim"):
            got.append(decode_heartbeat(msg.value()))
    consumer.close()
    assert len(got) == 3 and {b.session_id for b in got} == {session}
    assert all(b.match_id == match_id and before <= b.ts_ms <= int(time.time() * 1000)
               for b in got)


@pytest.mark.stack
async def test_without_kafka_heartbeats_get_a_clear_error(gateway, writer, match_id):
    peer, _ = await subscribed_peer(gateway, writer, match_id)
    await peer.send(p.heartbeat_message(beat(match_id=match_id)).decode())
    msg = await peer.recv()
    assert msg["type"] == "error" and msg["code"] == "unavailable"
    await peer.close()


@pytest.mark.stack
async def test_the_client_library_beats_while_connected(settings, redis, tmp_path, kafka_stack,
                                                        writer, match_id):
    import asyncio

    from gateway.client import GatewayClient
    from tests.gateway.test_gateway_stack import card

    await writer.publish(match_id, card(1))
    gw = Gateway(make_config(settings, tmp_path, kafka=client_config(settings, Principal.GATEWAY),
                             limits=Limits(heartbeat_min_gap=0.1)))
    await gw.start()
    client = GatewayClient(f"ws://127.0.0.1:{gw.port}/ws", [f"match:{match_id}"],
                           heartbeat=lambda: beat(session_id="lib", match_id=match_id),
                           heartbeat_interval=0.2)

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
        assert client.session is not None and client.session != "lib"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gw.stop()
