"""The gateway bench's baselines are hubs: same membership and replies, a different fanout."""

from __future__ import annotations

from typing import Any

import pytest

from bench.gateway.baselines import BASELINES, BroadcastHub, FloorHub
from gateway.hub import Client, Hub, text_frame
from gateway.limits import Limits

LIMITS = Limits(write_high_water=1000, queue_bytes=4000, write_timeout=5.0)


class FakeSink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.conn = object()  # the gateway's WsSink carries its websockets connection

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def buffered(self) -> int:
        return 0

    def offer(self, data: bytes, high_water: int) -> bool:
        self.write(data)
        return True

    def close(self, code: int, reason: str) -> None:
        pass


def test_floor_writes_each_frame_to_every_socket():
    hub, a, b = FloorHub(LIMITS), FakeSink(), FakeSink()
    for sink in (a, b):
        hub.attach(Client(sink), "match:m", 0)
    hub.publish_scores("match:m", [(1, b'{"seq":1}'), (2, b'{"seq":2}')], lambda: b"", 0.0)
    hub.publish_notes("notes:m", [((0, 1), b"{}")], 0.0)  # nobody there: nothing written
    assert a.writes == b.writes == [text_frame(b'{"seq":1}'), text_frame(b'{"seq":2}')]
    assert hub.stats.messages_out == 4


def test_broadcast_hands_the_connections_to_websockets(monkeypatch: pytest.MonkeyPatch):
    import websockets

    sent: list[tuple[list[Any], str]] = []
    monkeypatch.setattr(websockets, "broadcast", lambda conns, msg: sent.append((conns, msg)))
    hub, sink = BroadcastHub(LIMITS), FakeSink()
    hub.attach(Client(sink), "notes:m", (0, 0))
    hub.publish_notes("notes:m", [((0, 1), b'{"k":1}')], 0.0)
    assert sent == [([sink.conn], '{"k":1}')] and sink.writes == []


def test_every_baseline_is_a_hub():
    assert set(BASELINES) == {"floor", "broadcast"}
    assert all(issubclass(h, Hub) for h in BASELINES.values())
