"""The reference points of `stumpcast bench gateway`, as hubs the real gateway can run.

Same processes, same sockets, same feed as the hub; only the fanout differs:

* ``FloorHub``: one pre-encoded frame written to every socket in a tight loop, no queues, no
  conflation, no positions: the least a delivery can cost in this process shape;
* ``SyscallHub``: the syscall floor (issue #21): the same frame handed to the kernel with one
  ``os.write`` per socket, past the event loop's transport (which is used only when it still
  holds bytes of that socket, so the stream stays in order): the kernel's share of a
  delivery, plus one Python call;
* ``NativeHub``: the native floor: every socket of the channel in one call of the gateway's
  native send loop (``gateway.sendall``, one thread), with no check of queues, positions or
  buffers: the kernel's share and nothing else a process could drop.

(The gateway ran on the websockets library until issue #21, and a third baseline was its
``broadcast()``; the gateway now frames and writes itself, so that reference is gone.)

They replace only the publishing of scores and notes; joins, replies and closes stay the hub's.
"""

from __future__ import annotations

import os
from typing import Any

from gateway.hub import Client, Hub, Sub, text_frame


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
    def _send(self, c: Client, frame: bytes) -> None:
        sink: Any = c.sink  # the gateway's Connection
        fd = sink.direct()
        if fd < 0:
            sink.write(frame)  # behind bytes the loop still holds (or closing): keep the order
            return
        try:
            sent = os.write(fd, frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = -1
        if sent < len(frame):
            sink.rest(frame, sent)


class NativeHub(FloorHub):
    def _fan(self, subs: dict[Client, Sub] | None, payloads: list[bytes]) -> None:
        if not subs or not payloads:
            return
        from gateway import sendall

        sinks: list[Any] = [c.sink for c in subs]
        fds = [s.fd for s in sinks]  # the gateway's Connection
        for x in payloads:
            frame = text_frame(x)
            for i, sent in sendall.send_all_failures(fds, frame, 1):
                sinks[i].rest(frame, sent)  # in order: the transport holds the rest
        self.stats.messages_out += len(payloads) * len(subs)


BASELINES: dict[str, type[Hub]] = {"floor": FloorHub, "syscall": SyscallHub,
                                   "native": NativeHub}
