"""Subscriptions, bounded per-client queues, encode once (and frame once), conflation.

The hub never waits for a client. Each update is framed once per process and the same bytes go
to every subscriber. The fast path writes straight to the socket's transport when the client has
nothing queued and its transport buffer is under the high-water mark; updates that arrive
together (one Redis read) go out as one write per client. Otherwise the update waits in that
client's queue, where a match's score updates conflate: all pending score messages of the match
are replaced by one snapshot of the latest card (a chain of patches cannot be merged safely by
dropping links). Notifications are never dropped. A client whose queue still exceeds its byte
bound, or that accepts nothing for ``write_timeout``, is closed with ``CloseCode.SLOW`` and
resumes by position.

``Sink`` is the seam to the socket, so this module is tested with fakes. A hub may be given
``send_many``, a batch writer of one frame to many sockets (``gateway.sendall``: a native loop
with the GIL released); a large fanout then hands the kernel every socket whose transport holds
nothing in one call, and only what the kernel did not take goes through the transport.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.limits import Limits
from gateway.wire import text_frame
from schemas.protocol import CloseCode

SCORE, NOTE, CONTROL = 0, 1, 2
__all__ = ["Client", "Hub", "Sink", "Stats", "Sub", "text_frame"]


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def buffered(self) -> int: ...
    def close(self, code: int, reason: str) -> None: ...

    def offer(self, data: bytes, high_water: int) -> bool:
        """Write ``data`` if fewer than ``high_water`` bytes are buffered; False if not.

        The fanout loop's one call per client (``buffered`` then ``write`` costs two)."""
        ...

    def direct(self) -> int:
        """The socket's descriptor if bytes may go straight to it now (open, not closing,
        nothing buffered in user space, so the stream stays in order), else -1."""
        ...

    def rest(self, data: bytes, sent: int) -> None:
        """After a direct write that the kernel took ``sent`` bytes of (negative: an error),
        hand the rest to the transport: it buffers it, or meets the error and closes."""
        ...


@dataclass
class Stats:
    messages_out: int = 0
    bytes_out: int = 0
    writes: int = 0
    conflated: int = 0
    slow_closes: int = 0
    queued_bytes: int = 0
    p2_offered: int = 0  # P2 deliveries asked of this process, shed or not (the controller)
    p2_sent: int = 0     # ... and those handed to the clients (not shed)


class Sub:
    """One client on one channel; ``pos`` is the last position queued or written to it."""

    __slots__ = ("client", "pos")

    def __init__(self, client: Client, pos: Any) -> None:
        self.client = client
        self.pos = pos


class Client:
    __slots__ = ("sink", "subs", "queue", "queued", "since", "closed", "off")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.subs: dict[str, Sub] = {}
        self.queue: deque[tuple[int, str, bytes]] | None = None
        self.queued = 0
        self.since = 0.0  # when the queue became non-empty
        self.closed = False
        self.off: frozenset[str] = frozenset()  # features off for this client (gateway.flags)


SnapshotFn = Callable[[], bytes]
SendMany = Callable[[list[int], bytes], list[tuple[int, int]]]  # failures: (index, sent)
BATCH_MIN = 64  # subscribers below which the per-socket path is as cheap as a batch


class Hub:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.channels: dict[str, dict[Client, Sub]] = {}
        self.backlog: set[Client] = set()
        self.stats = Stats()
        self.send_many: SendMany | None = None

    # -- membership ----------------------------------------------------------------------------

    def attach(self, client: Client, key: str, pos: Any) -> None:
        sub = Sub(client, pos)
        client.subs[key] = sub
        self.channels.setdefault(key, {})[client] = sub

    def detach(self, client: Client, key: str) -> None:
        client.subs.pop(key, None)
        subs = self.channels.get(key)
        if subs is not None:
            subs.pop(client, None)
            if not subs:
                del self.channels[key]

    def drop(self, client: Client) -> None:
        for key in list(client.subs):
            self.detach(client, key)
        self.backlog.discard(client)
        self.stats.queued_bytes -= client.queued
        client.queued = 0
        client.queue = None

    def subscribers(self, key: str) -> int:
        return len(self.channels.get(key, ()))

    def subscriptions(self) -> int:
        return sum(len(s) for s in self.channels.values())

    # -- output --------------------------------------------------------------------------------

    def send(self, client: Client, payloads: list[bytes], now: float) -> None:
        """Lossless, in-order messages to one client (replies, snapshots, replays)."""
        if client.closed or not payloads:
            return
        self.send_framed(client, b"".join(text_frame(x) for x in payloads), len(payloads), now)

    def send_framed(self, client: Client, data: bytes, count: int, now: float) -> None:
        """``send`` of frames already built: one framing shared by many clients (flags)."""
        if client.closed:
            return
        if not self._write_now(client, data, count):
            self._enqueue(client, CONTROL, "", data, now)

    def _write_now(self, client: Client, data: bytes, count: int) -> bool:
        """Write straight to the socket when nothing is queued and its buffer has room."""
        if client.queued or client.sink.buffered() >= self.limits.write_high_water:
            return False
        self._write(client, data, count)
        return True

    def publish_scores(self, key: str, items: list[tuple[int, bytes]], snapshot: SnapshotFn,
                       now: float) -> None:
        """Consecutive updates of one match (seq, payload), read together from Redis."""
        subs = self.channels.get(key)
        if not subs or not items:
            return
        first, last, n = items[0][0], items[-1][0], len(items)
        joined = b"".join(text_frame(x) for _, x in items)
        hwm, late = self.limits.write_high_water, []
        if self.send_many is not None and len(subs) >= BATCH_MIN:
            late = self._batch(subs, first, last, joined)
        else:
            for client, sub in subs.items():
                if sub.pos < first and not client.queued and client.sink.offer(joined, hwm):
                    sub.pos = last
                else:
                    late.append(sub)
        self.stats.messages_out += n * (len(subs) - len(late))
        self.stats.bytes_out += len(joined) * (len(subs) - len(late))
        self.stats.writes += len(subs) - len(late)
        for sub in late:
            self._late_scores(key, sub, items, snapshot, now)

    def _batch(self, subs: dict[Client, Sub], first: int, last: int,
               joined: bytes) -> list[Sub]:
        """``publish_scores``'s loop with one batch write for every idle socket."""
        assert self.send_many is not None
        hwm, late, batch, fds = self.limits.write_high_water, [], [], []
        for client, sub in subs.items():
            if sub.pos < first and not client.queued:
                sink = client.sink
                fd = sink.direct()
                if fd >= 0:
                    batch.append(sub)
                    fds.append(fd)
                    continue
                if sink.offer(joined, hwm):
                    sub.pos = last
                    continue
            late.append(sub)
        for sub in batch:
            sub.pos = last
        if fds:
            for i, sent in self.send_many(fds, joined):
                batch[i].client.sink.rest(joined, sent)
        return late

    def _late_scores(self, key: str, sub: Sub, items: list[tuple[int, bytes]],
                     snapshot: SnapshotFn, now: float) -> None:
        client = sub.client
        fresh = [(seq, x) for seq, x in items if seq > sub.pos]
        if not fresh or client.closed:
            return
        sub.pos = fresh[-1][0]
        data = b"".join(text_frame(x) for _, x in fresh)
        if self._write_now(client, data, len(fresh)):
            return
        queue = client.queue or ()
        pending = sum(1 for kind, k, _ in queue if kind == SCORE and k == key)
        if pending or len(fresh) > 1:  # latest wins: one snapshot replaces the whole chain
            self._discard_scores(client, key)
            self.stats.conflated += pending + len(fresh) - 1
            data = text_frame(snapshot())
        self._enqueue(client, SCORE, key, data, now)

    def publish_notes(self, key: str, items: list[tuple[tuple[int, int], bytes]],
                      now: float) -> None:
        """Notifications are never conflated and never dropped."""
        subs = self.channels.get(key)
        if not subs or not items:
            return
        for client, sub in list(subs.items()):
            fresh = [x for pos, x in items if pos > sub.pos]
            if not fresh or client.closed:
                continue
            sub.pos = items[-1][0]
            data = b"".join(text_frame(x) for x in fresh)
            if not self._write_now(client, data, len(fresh)):
                self._enqueue(client, NOTE, key, data, now)

    def reset(self, key: str, pos: Any, payload: bytes, now: float) -> None:
        """A new epoch or an unbridgeable gap: every subscriber gets this snapshot."""
        for client, sub in list(self.channels.get(key, {}).items()):
            self._discard_scores(client, key)
            sub.pos = pos
            self.send(client, [payload], now)

    def sweep(self, now: float) -> None:
        """Drain queues whose socket has room again; close clients stuck too long."""
        for client in list(self.backlog):
            if client.closed or not client.queue:
                self.backlog.discard(client)
                continue
            if client.sink.buffered() >= self.limits.write_high_water:
                if now - client.since > self.limits.write_timeout:
                    self.close_slow(client, "no progress within the write timeout")
                continue
            data = b"".join(d for _, _, d in client.queue)
            count = len(client.queue)
            self.stats.queued_bytes -= client.queued
            client.queue.clear()
            client.queued = 0
            self.backlog.discard(client)
            self._write(client, data, count)

    def close_slow(self, client: Client, reason: str) -> None:
        self.stats.slow_closes += 1
        self.close(client, CloseCode.SLOW, f"slow: {reason}")

    def close(self, client: Client, code: int, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        self.drop(client)
        client.sink.close(code, reason)

    # -- internals -----------------------------------------------------------------------------

    def _write(self, client: Client, data: bytes, count: int) -> None:
        client.sink.write(data)
        self.stats.messages_out += count
        self.stats.bytes_out += len(data)
        self.stats.writes += 1

    def _enqueue(self, client: Client, kind: int, key: str, data: bytes, now: float) -> None:
        if client.queue is None:
            client.queue = deque()
        if client not in self.backlog:  # conflation empties the queue without progress
            client.since = now
        client.queue.append((kind, key, data))
        client.queued += len(data)
        self.stats.queued_bytes += len(data)
        self.backlog.add(client)
        if client.queued > self.limits.queue_bytes:
            self.close_slow(client, f"more than {self.limits.queue_bytes} bytes queued")

    def _discard_scores(self, client: Client, key: str) -> None:
        if not client.queue:
            return
        keep = deque(e for e in client.queue if not (e[0] == SCORE and e[1] == key))
        dropped = client.queued - sum(len(e[2]) for e in keep)
        client.queue = keep
        client.queued -= dropped
        self.stats.queued_bytes -= dropped
