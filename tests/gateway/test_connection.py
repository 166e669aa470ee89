"""The gateway's own WebSocket shell (``gateway.connection``) on a real socket and Redis.

What a general-purpose library did for the gateway before issue #21, checked on the wire with
raw bytes: a protocol error fails the connection with its close code, the closing handshake in
both directions, the close timeout, frames sent eagerly behind the request head, messages kept
in order while a join waits, and the batch writer's fallback to the transport.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import orjson
import pytest

from gateway import connection
from gateway.limits import Limits
from tests.gateway.conftest import connect
from tests.gateway.test_gateway_stack import card, gateway_with, healthy, still_healthy

pytestmark = pytest.mark.stack

KEY = base64.b64encode(b"0123456789abcdef").decode()
UPGRADE = (f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def masked(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44",
           rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


class Raw:
    """A client speaking bytes: what it sends is exactly what the test wrote."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, head: bytes = UPGRADE, expect: bytes = b"101") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert expect in status.split(b"\r\n")[0], status
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload); server frames are never masked."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 3)
        assert not b1 & 0x80, "a server frame was masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def close_code(self) -> int | None:
        """Read frames until the server's close frame; its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    async def eof(self, body_ok: bool = False) -> bool:
        """Whether the server closed within 3 s, with nothing more sent (but an HTTP body)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), 3)
        except ConnectionResetError:
            return True
        return body_ok or rest == b""

    def close(self) -> None:
        self.writer.close()


def subscribe(match_id: str, req_id: int = 1) -> bytes:
    return orjson.dumps({"type": "subscribe", "v": 1, "id": req_id,
                         "channel": f"match:{match_id}"})


@pytest.mark.parametrize(("frame", "code"), [
    (bytes([0x81, 0x02]) + b"hi", 1002),                          # not masked
    (masked(0x1, b"hi", rsv=0x40), 1002),                         # RSV1 without an extension
    (masked(0x3, b"hi"), 1002),                                   # unknown opcode
    (masked(0x9, b"x" * 126), 1002),                              # control frame too long
    (masked(0x1, b"\xff\xfe"), 1007),                             # text not UTF-8
    (masked(0x1, b"x" * 70_000), 1009),                           # above the hard frame limit
])
async def test_a_protocol_error_fails_only_that_connection(gateway, writer, match_id,
                                                           frame, code):
    good, state = await healthy(gateway, writer, match_id)
    bad = await Raw.open(gateway.port)
    await bad.send(frame)
    assert await bad.close_code() == code
    assert await bad.eof()
    await still_healthy(good, writer, match_id, state)
    await good.close()


async def test_closing_handshake_started_by_the_client_is_echoed(gateway):
    peer = await Raw.open(gateway.port)
    await peer.send(masked(0x8, struct.pack("!H", 1000) + b"bye"))
    assert await peer.close_code() == 1000
    assert await peer.eof()  # the server closes the TCP connection first (RFC 6455 §7.1.1)
    await asyncio.sleep(0.05)
    assert gateway.connections == 0 and not gateway.conns


async def test_a_peer_that_never_answers_our_close_is_cut_after_the_close_timeout(
        gateway, monkeypatch):
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.3)
    peer = await Raw.open(gateway.port)
    await asyncio.sleep(0.05)
    (conn,) = gateway.conns
    conn.close(4000, "draining")
    assert await peer.close_code() == 4000
    assert await peer.eof()  # no close frame from us: cut after the timeout
    await asyncio.sleep(0.05)
    assert gateway.connections == 0


async def test_a_request_head_that_never_ends_is_cut_after_the_open_timeout(
        gateway, monkeypatch):
    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 0.3)
    reader, writer_ = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer_.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    await writer_.drain()
    assert await Raw(reader, writer_).eof()
    await asyncio.sleep(0.05)
    assert not gateway.conns


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),                 # no upgrade asked
    (UPGRADE.replace(b"Version: 13", b"Version: 8"), b"426"),
    (UPGRADE.replace(KEY.encode(), b"short"), b"400"),
    (b"POST /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
    (b"GET /ws HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n", b"431"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # TLS to a plain port
])
async def test_a_bad_request_head_gets_an_http_error_and_the_socket_closes(gateway, head,
                                                                            status):
    peer = await Raw.open(gateway.port, head, expect=status)
    assert await peer.eof(body_ok=True)


async def test_frames_sent_with_the_request_head_are_not_lost(gateway, writer, match_id):
    await writer.publish(match_id, card(1))
    peer = await Raw.open(gateway.port, UPGRADE + masked(0x1, subscribe(match_id)))
    replies = [orjson.loads((await peer.frame())[1]) for _ in range(2)]
    assert [r["type"] for r in replies] == ["subscribed", "snapshot"]
    peer.close()


async def test_messages_behind_a_waiting_join_keep_their_order(gateway, writer, match_id):
    """A join may read Redis; what the client sent after it is answered after it, in order,
    with at most a few messages held (then reading pauses: a bounded queue)."""
    await writer.publish(match_id, card(1))
    others = [f"{match_id}{i}" for i in range(8)]
    for other in others:
        await writer.publish(other, card(1))
    peer = await Raw.open(gateway.port)
    burst = b"".join(masked(0x1, subscribe(m, i)) for i, m in enumerate([match_id, *others]))
    await peer.send(burst)  # nine joins in one segment, each one a cold cache
    subscribed = []
    while len(subscribed) < 9:
        msg = orjson.loads((await peer.frame())[1])
        if msg["type"] == "subscribed":
            subscribed.append(msg["id"])
    assert subscribed == list(range(9))
    peer.close()


async def test_the_batch_writer_hands_what_the_kernel_refused_to_the_transport(
        settings, tmp_path, writer, match_id):
    """Every subscriber gets every update whatever the batch writer reports: a partial write
    or an error is finished or surfaced through the transport, in order."""
    async with gateway_with(settings, tmp_path) as gw:
        await writer.publish(match_id, card(1))
        peers = [await connect(gw.port) for _ in range(80)]  # above hub.BATCH_MIN
        for peer in peers:
            await peer.subscribe(f"match:{match_id}")
            assert (await peer.recv())["type"] == "snapshot"
        real = gw.hub.send_many
        assert real is not None

        def stingy(fds: list[int], data: bytes) -> list[tuple[int, int]]:
            # The first third get only 3 bytes, the next third nothing (as if EAGAIN), the
            # rest all of it: what the kernel may answer under load.
            third = len(fds) // 3
            fails = [(i, os.write(fd, data[:3])) for i, fd in enumerate(fds[:third])]
            fails += [(third + i, 0) for i in range(third)]
            for i, sent in real(fds[2 * third:], data):
                fails.append((2 * third + i, sent))
            return fails

        gw.hub.send_many = stingy
        update = await writer.publish(match_id, card(2))
        for peer in peers:
            msg = await peer.recv()
            assert msg["type"] == "update" and msg["seq"] == update.seq
        for peer in peers:
            await peer.close()


async def test_idle_connections_hold_no_buffers(gateway, writer, match_id):
    """What an idle subscriber keeps: no request head, no partial frame, no pending queue."""
    await writer.publish(match_id, card(1))
    peer = await connect(gateway.port)
    await peer.subscribe(f"match:{match_id}")
    await peer.recv()
    await asyncio.sleep(0.05)
    (conn,) = gateway.conns
    assert conn.buf == b"" and conn.pending is None and conn.timer is None
    assert conn.client is not None and conn.client.queue is None
    await peer.close()


def test_limits_are_the_gateways():
    assert Limits().hard_max_frame_bytes == 65536  # the 1009 case above sends 70,000 bytes


async def test_a_health_check_in_http_1_0_is_answered(gateway):
    """HAProxy's ``http-check`` sends HTTP/1.0 unless told otherwise (stack lb, compose)."""
    peer = await Raw.open(gateway.port, b"GET /healthz HTTP/1.0\r\n\r\n", expect=b"200")
    assert await peer.eof(body_ok=True)
