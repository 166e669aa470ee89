"""The benchmark's load client parses what the gateway sends and answers pings (a client that
never pongs is dropped by the keepalive, which once wrecked a 20k run)."""

from __future__ import annotations

from typing import Any

from bench.gateway.loadclient import Conn, Generator, head
from gateway.hub import text_frame
from schemas import protocol as p
from schemas.view import make_update


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


def open_conn() -> tuple[Generator, Conn, FakeTransport]:
    gen = Generator(0)
    conn = Conn(gen, "m")
    t = FakeTransport()
    conn.transport: Any = t
    conn.open = True
    return gen, conn, t


def test_ping_is_answered_with_a_masked_pong_of_the_same_payload() -> None:
    _, conn, t = open_conn()
    conn.data_received(b"\x89\x04abcd")
    assert t.out == [b"\x8a\x84\x00\x00\x00\x00abcd"]


def test_updates_are_counted_from_the_head_only_and_gaps_detected() -> None:
    gen, conn, _ = open_conn()
    ts = "2026-11-23T12:00:00.000000Z"
    snap = p.snapshot("m", 1, 3, ts, b'{"runs": 1}')
    u4 = make_update("m", 1, 4, 3, ts, {"runs": 1}, {"runs": 5}).encode()
    u6 = make_update("m", 1, 6, 5, ts, {"runs": 5}, {"runs": 9}).encode()
    # Split across reads, to exercise the frame parser's buffering.
    data = text_frame(snap) + text_frame(u4) + b"\x89\x00" + text_frame(u6)
    conn.data_received(data[:7])
    conn.data_received(data[7:])
    t = gen.totals
    assert (t.snapshots, t.updates, t.gaps, conn.pos) == (1, 2, 1, 6)
    assert head(u4) == ({"type": "update", "v": 1, "match_id": "m", "epoch": 1, "seq": 4,
                         "prev_seq": 3}, ts)
