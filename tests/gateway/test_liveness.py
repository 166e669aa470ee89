"""Keepalive and feed wake-up against real Redis: a vanished peer is dropped after the ping
timeout, a live one is kept; a new match's first update is not held behind the blocking read;
the upgrade's headers are not kept per connection."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from typing import Any

import pytest

from gateway.server import Gateway
from tests.gateway.conftest import connect, make_config

pytestmark = pytest.mark.stack


async def silent_peer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the upgrade and then never answers anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def started(settings: Any, tmp_path: Any, **kw: Any) -> Gateway:
    config = dataclasses.replace(make_config(settings, tmp_path), **kw)
    gw = Gateway(config)
    await gw.start()
    return gw


async def test_a_peer_that_stops_answering_pings_is_dropped(settings, tmp_path, redis):
    gw = await started(settings, tmp_path, ping_interval=0.2, ping_timeout=0.5)
    try:
        live = await connect(gw.port)  # the websockets client answers pings itself
        reader, writer = await silent_peer(gw.port)
        await asyncio.sleep(0.1)
        assert gw.connections == 2
        # The silent peer reads pings but never pongs: after the timeout the gateway aborts it.
        deadline = time.monotonic() + 5
        while gw.connections > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert gw.connections == 1 and gw.pong_timeouts == 1
        data = await asyncio.wait_for(reader.read(), 2)  # EOF or RST, not a hang
        assert b"\x89" in data or data == b""
        pong = await live.conn.ping()
        await asyncio.wait_for(pong, 2)  # the responsive client is still served
        writer.close()
        await live.close()
    finally:
        await gw.stop()


async def test_ping_sweep_keeps_answering_peers(settings, tmp_path, redis):
    gw = await started(settings, tmp_path, ping_interval=None)
    try:
        peer = await connect(gw.port)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        assert await gw.ping_sweep(loop.time(), 0.3) == 0   # pings sent
        await asyncio.sleep(0.1)                             # pongs come back
        assert await gw.ping_sweep(loop.time() + 1.0, 0.3) == 0
        assert gw.connections == 1
        await peer.close()
    finally:
        await gw.stop()


async def test_a_new_match_joins_the_blocking_read_at_once(gateway, writer, match_id):
    from tests.gateway.test_gateway_stack import card

    other = match_id + "o"
    await writer.publish(other, card(1))
    await writer.publish(match_id, card(1))
    first = await connect(gateway.port)
    await first.subscribe(f"match:{other}")
    await first.recv()  # snapshot
    gateway.feed.block_ms = 5000  # the next read blocks 5 s on `other` only
    await asyncio.sleep(0.4)
    peer = await connect(gateway.port)
    await peer.subscribe(f"match:{match_id}")
    assert (await peer.recv())["type"] == "snapshot"
    start = time.monotonic()
    update = await writer.publish(match_id, card(5))
    msg = await peer.recv(timeout=3.0)
    took = time.monotonic() - start
    assert msg["type"] == "update" and msg["seq"] == update.seq
    assert took < 0.5, f"first live update of a new match took {took:.2f} s"
    assert gateway.feed.stats.wakes >= 1
    await first.close()
    await peer.close()


async def test_upgrade_headers_are_not_kept_per_connection(gateway):
    import gc
    import weakref

    from gateway.wire import Headers, Request

    peer = await connect(gateway.port, additional_headers={"X-Big": "y" * 2000})
    await asyncio.sleep(0.05)
    (conn,) = list(gateway.conns)
    assert conn.buf == b""  # the request head is not kept after the upgrade
    # Nothing the connection holds (its own objects, not the shared gateway or the transport)
    # leads to the request: walk what it references, a few levels deep.
    seen, frontier = set(), [getattr(conn, name) for name in conn.__slots__
                             if name not in ("gw", "transport")]
    for _ in range(4):
        nxt = []
        for obj in frontier:
            if id(obj) in seen or obj is gateway:
                continue
            seen.add(id(obj))
            if isinstance(obj, weakref.ProxyTypes):
                continue  # a dead proxy raises on any question; a live one is not ownership
            assert not isinstance(obj, (Request, Headers)), "the upgrade request is kept"
            nxt.extend(gc.get_referents(obj))
        frontier = nxt
    await peer.close()


async def test_metrics_of_one_worker_include_its_siblings(settings, tmp_path, redis):
    """Workers share a port, so a scrape reaches one of them; it must report all of them."""
    from tests.gateway.test_gateway_stack import http_get

    stats = tmp_path / "stats"
    stats.mkdir()
    admin = free_port()
    a = await started(settings, tmp_path, worker="0", stats_path=stats / "worker-0.json",
                      admin_port=admin)
    b = await started(settings, tmp_path, worker="1", stats_path=stats / "worker-1.json")
    try:
        peers = [await connect(b.port) for _ in range(3)]
        await asyncio.sleep(1.2)  # worker 1 has rewritten its counters since
        status, _, body = await http_get(admin, "/metrics")
        text = body.decode()
        assert status == 200
        assert 'stumpcast_gateway_connections{worker="0"} 0.0' in text
        assert 'stumpcast_gateway_connections{worker="1"} 3.0' in text
        for peer in peers:
            await peer.close()
    finally:
        await a.stop()
        await b.stop()
