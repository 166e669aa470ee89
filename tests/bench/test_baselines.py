"""The gateway bench's baselines are hubs: same membership and replies, a different fanout."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bench.gateway.baselines import BASELINES, FloorHub, SyscallHub
from gateway.hub import Client, Hub, text_frame
from gateway.limits import Limits

LIMITS = Limits(write_high_water=1000, queue_bytes=4000, write_timeout=5.0)


class FakeSink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

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


def test_every_baseline_is_a_hub():
    assert set(BASELINES) == {"floor", "syscall", "native"}
    assert all(issubclass(h, Hub) for h in BASELINES.values())


class FakeTransport:
    """What SyscallHub asks of the event loop's transport: its socket, its buffer, its writes."""

    def __init__(self, sock: socket.socket, buffered: int = 0) -> None:
        self.sock, self.buffered, self.writes = sock, buffered, []  # type: ignore[var-annotated]

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.writes.append(data)


class TransportSink(FakeSink):
    """The gateway's Connection as the hub sees it: direct() and rest() over a transport."""

    def __init__(self, transport: FakeTransport) -> None:
        super().__init__()
        self.transport = transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def direct(self) -> int:
        t = self.transport
        return -1 if t.get_write_buffer_size() else int(t.get_extra_info("socket").fileno())

    def rest(self, data: bytes, sent: int) -> None:
        self.transport.write(data[sent:] if sent > 0 else data)


def test_the_syscall_floor_writes_to_the_socket_and_keeps_the_stream_in_order():
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, _ in pairs:
        ours.setblocking(False)
    empty, behind, full = (FakeTransport(ours) for ours, _ in pairs)
    behind.buffered = 10  # the loop still holds bytes of this socket: the frame goes after them
    pairs[2][0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        while True:  # fill the third socket's send buffer: the kernel takes part or nothing
            pairs[2][0].send(b"x" * 4096)
    except BlockingIOError:
        pass
    hub = SyscallHub(LIMITS)
    for t in (empty, behind, full):
        hub.attach(Client(TransportSink(t)), "match:m", 0)
    frame = text_frame(b'{"seq":1}')
    hub.publish_scores("match:m", [(1, b'{"seq":1}')], lambda: b"", 0.0)
    assert pairs[0][1].recv(100) == frame and empty.writes == []
    assert behind.writes == [frame]
    pairs[1][1].setblocking(False)
    with pytest.raises(BlockingIOError):
        pairs[1][1].recv(100)                                # nothing passed the loop's bytes
    assert full.writes and frame.endswith(full.writes[0])   # what the kernel did not take
    assert hub.stats.messages_out == 3
    for a, b in pairs:
        a.close()
        b.close()
