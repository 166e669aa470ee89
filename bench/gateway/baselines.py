"""The reference points of `stumpcast bench gateway`, as hubs the real gateway can run.

Same processes, same sockets, same feed as the hub; only the fanout differs:

* ``FloorHub``: one pre-encoded frame written to every socket in a tight loop, no queues, no
  conflation, no positions: the least a delivery can cost in this process shape;
* ``BroadcastHub``: ``websockets.broadcast()``, the library's own fanout (it encodes once, has
  no backpressure and skips connections that are not open).

They replace only the publishing of scores and notes; joins, replies and closes stay the hub's.
"""

from __future__ import annotations

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
        for x in payloads:
            frame = text_frame(x)
            for c in subs:
                c.sink.write(frame)
        self.stats.messages_out += len(payloads) * len(subs)


class BroadcastHub(FloorHub):
    def _fan(self, subs: dict[Client, Sub] | None, payloads: list[bytes]) -> None:
        if not subs or not payloads:
            return
        import websockets

        conns = [c.sink.conn for c in subs]  # type: ignore[attr-defined]  # gateway's WsSink
        for x in payloads:
            websockets.broadcast(conns, x.decode())
        self.stats.messages_out += len(payloads) * len(subs)


BASELINES: dict[str, type[Hub]] = {"floor": FloorHub, "broadcast": BroadcastHub}
