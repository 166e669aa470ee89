"""The reference points of `stumpcast bench gateway`, as hubs the real gateway can run.

Same processes, same sockets, same feed as the hub; only the fanout differs:

* ``FloorHub``: one pre-encoded frame written to every socket in a tight loop, no queues, no
  conflation, no positions: the least a delivery can cost in this process shape;
* ``SyscallHub``: the syscall floor (issue #21): the same frame handed to the kernel with one
  ``os.write`` per socket, past the event loop's transport (which is used only when it still
  holds bytes of that socket, so the stream stays in order): what a send loop in native code
  would cost, the kernel's share of a delivery;
* ``BroadcastHub``: ``websockets.broadcast()``, the library's own fanout (it encodes once, has
  no backpressure and skips connections that are not open).

They replace only the publishing of scores and notes; joins, replies and closes stay the hub's.
"""

from __future__ import annotations

import os
from typing import Any

from websockets.protocol import State

from gateway.hub import Client, Hub, Sub, text_frame

OPEN = State.OPEN


class FloorHub(Hub):
    def publish_scores(self, key: str, items: list[tuple[int, bytes]], snapshot: Any,
                       now: float) -> None:
        self._fan(self.channels.get(key), [x for _, x in items])

    def publish_notes(self, key: str, items: list[tuple[tuple[int, int], bytes]],
                      now: float) -> None:
        self._fan(self.channels.get(key), [x for _, x in items])

    def _fan(self, subs: dict[Client, Sub] | None, payloads: list[bytes]) -> None:
        if not subs or not payloads:
            return
        send = self._send
        for x in payloads:
            frame = text_frame(x)
            for c in subs:
                send(c, frame)
        self.stats.messages_out += len(payloads) * len(subs)

    def _send(self, c: Client, frame: bytes) -> None:
        c.sink.write(frame)


class SyscallHub(FloorHub):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fds: dict[Client, int] = {}

    def _send(self, c: Client, frame: bytes) -> None:
        sink: Any = c.sink  # the gateway's WsSink
        transport = sink.transport
        if sink.protocol.state is not OPEN or transport.is_closing():
            return  # after a close frame no data frame (as WsSink.write)
        if transport.get_write_buffer_size():
            transport.write(frame)  # behind bytes the loop still holds: keep the order
            return
        fd = self._fds.get(c)
        if fd is None:
            fd = self._fds[c] = transport.get_extra_info("socket").fileno()
        try:
            sent = os.write(fd, frame)
        except BlockingIOError:
            sent = 0
        if sent < len(frame):
            transport.write(frame[sent:])

    def drop(self, client: Client) -> None:
        self._fds.pop(client, None)
        super().drop(client)


class BroadcastHub(FloorHub):
    def _fan(self, subs: dict[Client, Sub] | None, payloads: list[bytes]) -> None:
        if not subs or not payloads:
            return
        import websockets

        conns = [c.sink.conn for c in subs]  # type: ignore[attr-defined]  # gateway's WsSink
        for x in payloads:
            websockets.broadcast(conns, x.decode())
        self.stats.messages_out += len(payloads) * len(subs)


BASELINES: dict[str, type[Hub]] = {"floor": FloorHub, "syscall": SyscallHub,
                                   "broadcast": BroadcastHub}
