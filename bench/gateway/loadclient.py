"""Load-generator process: thousands of minimal WebSocket clients on one asyncio loop.

Each client is a bare ``asyncio.BufferedProtocol`` (handshake, masked subscribe, unmasked frame
parser), so the generator spends its CPU on receiving, not on a client library. Reads go into
one buffer per process (``recv_into``): a plain ``Protocol`` makes asyncio call
``recv(256 KiB)`` per read, and glibc serves an allocation that large with mmap, mremap and
munmap each time (~13 µs per read on the 2-core VM, more than the parsing), CPU taken from the
gateway under test. Every update's latency
is measured from its ``ts`` (set by the driver just before the commit to Redis) to receipt, and
every client checks continuity (``prev_seq``), so lost updates are counted, not assumed. The
parent drives it over a pipe with small commands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import random
import time
from array import array
from typing import Any

import orjson

_EPOCH = dt.datetime(1970, 1, 1)


def ts_seconds(ts: str) -> float:
    return (dt.datetime.fromisoformat(ts[:-1]) - _EPOCH).total_seconds()


_TS = b',"ts":"'


def head(payload: bytes) -> tuple[dict[str, Any], str]:
    """The small head of an update or snapshot (type, epoch, seq, prev_seq) and its ``ts``,
    without decoding the patch or card that follows (the generator must stay cheap so that
    the gateway, not the client, is what the latency measures). Other messages: all of it."""
    i = payload.find(_TS)
    if i < 0:
        return orjson.loads(payload), ""
    j = payload.index(b'"', i + len(_TS))
    return orjson.loads(payload[:i] + b"}"), payload[i + len(_TS):j].decode()


class Heads:
    """``head`` and the ``ts`` in seconds, once per distinct head: the thousands of clients of
    one process receive the same bytes for an update, and decoding them again for each one is
    the generator's cost, not the gateway's. Every client still checks its own continuity."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[bytes, tuple[dict[str, Any], float]] = {}

    def get(self, payload: bytes) -> tuple[dict[str, Any], float]:
        i = payload.find(_TS)
        if i < 0:
            return orjson.loads(payload), 0.0
        key = payload[:payload.index(b'"', i + len(_TS))]
        hit = self.seen.get(key)
        if hit is None:
            msg, ts = head(payload)
            hit = (msg, ts_seconds(ts))
            if len(self.seen) >= 4096:
                self.seen.clear()
            self.seen[key] = hit
        return hit


class Cards:
    """The card each client holds (``stumpcast chaos``), built from the bytes it received: the
    last snapshot, then each update's patch (or card) applied in order, as a viewer's app
    does. ``patch.apply`` is pure, so two clients holding the same card that receive the same
    bytes hold the same card after: each step is computed once per process and shared by id,
    while every client still follows its own chain (one that skipped, doubled or misapplied an
    update ends on another card). State 0 is "no card" (none yet, or a gap broke it)."""

    __slots__ = ("cards", "snapshots", "steps")

    def __init__(self) -> None:
        self.cards: list[Any] = [None]
        self.snapshots: dict[bytes, int] = {}
        self.steps: dict[tuple[int, bytes], int] = {}

    def snapshot(self, payload: bytes) -> int:
        state = self.snapshots.get(payload)
        if state is None:
            state = self.snapshots[payload] = self._new(orjson.loads(payload)["card"])
        return state

    def step(self, state: int, payload: bytes) -> int:
        """The card after ``payload`` (an update) is applied to card ``state``."""
        if not state:
            return 0
        nxt = self.steps.get((state, payload))
        if nxt is None:
            from schemas import patch

            msg = orjson.loads(payload)
            try:
                card = msg["card"] if "card" in msg else patch.apply(self.cards[state],
                                                                     msg["patch"])
            except patch.PatchError:
                nxt = 0
            else:
                nxt = self._new(card)
            self.steps[(state, payload)] = nxt
        return nxt

    def _new(self, card: Any) -> int:
        self.cards.append(card)
        return len(self.cards) - 1

    def held(self, conns: list[Conn]) -> list[tuple[str, Any, int]]:
        """(match, card, clients holding it) for each distinct card the clients hold."""
        count: dict[tuple[str, int], int] = {}
        for c in conns:
            count[(c.match, c.card)] = count.get((c.match, c.card), 0) + 1
        return [(m, self.cards[state], n) for (m, state), n in count.items()]


class Totals:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.updates = 0
        self.covered = 0           # updates reflected (a snapshot covers the ones it skipped)
        self.snapshots = 0
        self.gaps = 0
        self.recovered = 0
        self.not_recovered = 0
        self.retries = 0
        self.last_rx = 0.0
        self.latency = array("f")  # ms
        self.last: dict[tuple[str, int], float] = {}  # (match, seq) -> latest receipt latency
        self.flags: dict[int, array[float]] = {}  # flags version -> receipt times (bench flags)
        self.flags_on: dict[int, int] = {}  # flags version -> clients told "sync_video": true
        self.p2 = 0                # "watching" and note messages received (P2; bench flags)
        self.drops = 0             # connections lost that were reopened (``reconnect`` on)
        # (match, seq) -> first and last receipt among this process's clients (``track`` on;
        # ``stumpcast chaos``: how stale the fastest and the slowest client's view was)
        self.rx_first: dict[tuple[str, int], float] = {}
        self.rx_last: dict[tuple[str, int], float] = {}


_READ = memoryview(bytearray(65536))  # every read lands here, then is copied out at once


class Conn(asyncio.BufferedProtocol):
    __slots__ = ("gen", "channel", "transport", "buf", "open", "pos", "epoch", "match",
                 "retrying", "card")

    def __init__(self, gen: Generator, match: str) -> None:
        self.gen = gen
        self.match = match
        self.channel = f"match:{match}".encode()
        self.transport: Any = None
        self.buf = b""
        self.open = False
        self.pos = 0
        self.epoch = 0
        self.retrying = False  # a reopen is scheduled: a second one would double the client
        self.card = 0          # its card in ``Generator.cards`` (``track`` on)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.retrying = False
        key = base64.b64encode(os.urandom(16))
        transport.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                        b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def subscribe(self, resume: bool) -> None:
        doc: dict[str, Any] = {"type": "subscribe", "v": 1, "channel": self.channel.decode()}
        if resume and self.pos:
            doc["since"] = {"epoch": self.epoch, "seq": self.pos}
        self.send(orjson.dumps(doc))

    def send(self, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
        self.transport.write(head + b"\0\0\0\0" + payload)  # mask key 0: payload unchanged

    def control(self, first: int, payload: bytes) -> None:
        """A masked control frame (payload ≤ 125 bytes), mask key 0."""
        self.transport.write(bytes([first, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ[:nbytes]))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.gen.totals.retries += 1
                self.transport.abort()
                self.gen.retry(self)
                return
            self.open = True
            buf = buf[end + 4:]
            self.subscribe(resume=True)
            if self.gen.region is not None:  # bench flags: this client's flags and notes too
                self.send(orjson.dumps({"type": "subscribe", "v": 1, "channel": "flags",
                                        "context": {"region": self.gen.region}}))
                self.send(orjson.dumps({"type": "subscribe", "v": 1,
                                        "channel": f"notes:{self.match}"}))
        i, n = 0, len(buf)
        while n - i >= 2:
            length, start = buf[i + 1] & 0x7F, i + 2
            if length == 126:
                if n - i < 4:
                    break
                length, start = int.from_bytes(buf[i + 2:i + 4], "big"), i + 4
            elif length == 127:
                if n - i < 10:
                    break
                length, start = int.from_bytes(buf[i + 2:i + 10], "big"), i + 10
            if n < start + length:
                break
            opcode = buf[i] & 0x0F
            if opcode == 1:
                self.gen.on_message(self, buf[start:start + length])
            elif opcode == 9:  # ping: pong with the same payload, as every client must
                self.control(0x8A, buf[start:start + length])
            i = start + length
        self.buf = buf[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.buf = b""
        if self.gen.reconnect and not self.retrying:
            # its gateway died (or refused the handshake): back through the load balancer,
            # resuming by position
            self.gen.totals.drops += 1
            self.gen.retry(self)


class Generator:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: list[Conn] = []
        self.totals = Totals()
        self.measure = False
        self.heads = Heads()
        self.region: str | None = None  # set: every client also subscribes to its flags
        self.reconnect = False  # set: a lost connection is reopened and resumes by position
        self.track = False      # set: receipt times per (match, seq) and the card each
        self.cards = Cards()    # client holds (``stumpcast chaos``)

    def on_flags_or_p2(self, payload: bytes, now: float) -> bool:
        """``bench flags``: a flags message's receipt time by version, P2 messages counted."""
        if payload.startswith(b'{"type":"flags"'):
            version = orjson.loads(payload)["version"]
            self.totals.flags.setdefault(version, array("d")).append(now)
            if b'"sync_video":true' in payload:  # the rollout share through the gateway
                self.totals.flags_on[version] = self.totals.flags_on.get(version, 0) + 1
            return True
        if payload.startswith((b'{"type":"watching"', b'{"type":"note"')):
            self.totals.p2 += 1
            return True
        return False

    def on_message(self, conn: Conn, payload: bytes) -> None:
        t = self.totals
        t.frames += 1
        now = t.last_rx = time.time()
        if self.region is not None and self.on_flags_or_p2(payload, now):
            return
        msg, sent = self.heads.get(payload)
        kind = msg.get("type")
        if kind == "update":
            if msg["prev_seq"] != conn.pos or msg["epoch"] != conn.epoch:
                if msg["seq"] <= conn.pos:
                    return
                t.gaps += 1
                conn.card = 0        # not the update that follows its card: the card is lost
            elif self.track:
                conn.card = self.cards.step(conn.card, payload)
            t.updates += 1
            t.covered += msg["seq"] - conn.pos
            conn.pos = msg["seq"]
        elif kind == "snapshot":
            t.snapshots += 1
            first = not conn.pos  # a subscribe snapshot is not a delivery of a new update
            t.covered += 0 if first else max(0, msg["seq"] - conn.pos)
            conn.pos, conn.epoch = msg["seq"], msg["epoch"]
            if self.track:
                conn.card = self.cards.snapshot(payload)
            if first:
                return
        elif kind == "subscribed":
            if msg["recovered"]:
                t.recovered += 1
            else:
                t.not_recovered += 1
            return
        else:
            return
        if self.track:
            self._track(conn.match, conn.pos, now)
        if self.measure and sent:
            lat = (now - sent) * 1000
            t.latency.append(lat)
            key = (conn.match, msg["seq"])
            if lat > t.last.get(key, 0.0):
                t.last[key] = lat

    def _track(self, match: str, seq: int, now: float) -> None:
        key = (match, seq)
        t = self.totals
        t.rx_first.setdefault(key, now)
        t.rx_last[key] = now

    def counts(self) -> dict[str, Any]:
        """What ``stumpcast chaos`` reads at each checkpoint (cumulative; the receipt times
        are handed over once and cleared)."""
        t = self.totals
        out = {"recovered": t.recovered, "not_recovered": t.not_recovered, "drops": t.drops,
               "gaps": t.gaps, "snapshots": t.snapshots, "retries": t.retries,
               "rx_first": t.rx_first, "rx_last": t.rx_last,
               "positions": [(c.match, c.pos, c.open) for c in self.conns],
               "cards": self.cards.held(self.conns) if self.track else []}
        t.rx_first, t.rx_last = {}, {}
        return out

    async def connect(self, matches: list[str], rate: float) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        for i, match in enumerate(matches):
            conn = Conn(self, match)
            await self._open(loop, conn)
            self.conns.append(conn)
            ahead = start + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _open(self, loop: Any, conn: Conn) -> None:
        """Connect, retrying with capped full-jitter backoff (a full accept queue refuses)."""
        for attempt in range(40):
            try:
                await loop.create_connection(lambda: conn, "127.0.0.1", self.port)
                return
            except OSError:
                self.totals.retries += 1
                await asyncio.sleep(min(2.0, 0.05 * 2 ** attempt) * random.random())
        if self.reconnect:  # a viewer does not give up (``stumpcast chaos``): later, again
            self.retry(conn)

    def retry(self, conn: Conn) -> None:
        conn.retrying = True
        loop = asyncio.get_running_loop()
        loop.call_later(0.2 + random.random(), lambda: loop.create_task(self._open(loop, conn)))

    def switch(self, match: str) -> None:
        for conn in self.conns:
            conn.send(orjson.dumps({"type": "unsubscribe", "v": 1, "channel":
                                    conn.channel.decode()}))
            conn.match, conn.channel, conn.pos, conn.epoch = match, f"match:{match}".encode(), 0, 0
            conn.subscribe(resume=False)

    async def storm(self, window: float) -> None:
        """Every client drops (RST) and reconnects with ``since`` within ``window`` seconds."""
        loop = asyncio.get_running_loop()
        for conn in self.conns:
            conn.transport.abort()
        for conn in self.conns:
            loop.call_later(random.random() * window, self._reopen, loop, conn)
        await asyncio.sleep(window)

    def _reopen(self, loop: Any, conn: Conn) -> None:
        loop.create_task(self._open(loop, conn))

    def abort_all(self) -> None:
        self.reconnect = False
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()
        self.conns = []

    def settled(self, finals: dict[str, int]) -> int:
        """Clients open and at the final position of their match."""
        return sum(1 for c in self.conns if c.open and finals.get(c.match, 0) == c.pos)

    def report(self, finals: dict[str, int]) -> dict[str, Any]:
        t = self.totals
        behind = sum(1 for c in self.conns if finals.get(c.match, 0) != c.pos)
        return {"frames": t.frames, "updates": t.updates, "covered": t.covered,
                "snapshots": t.snapshots, "gaps": t.gaps, "recovered": t.recovered,
                "not_recovered": t.not_recovered, "retries": t.retries, "behind": behind,
                "open": sum(1 for c in self.conns if c.open), "last_rx": t.last_rx,
                "latency": t.latency.tobytes(), "last": t.last}


def main(pipe: Any, port: int, settings: Any) -> None:
    from gateway.workers import raise_fd_limit
    from runtime.eventloop import run_loop

    raise_fd_limit()
    batch_scheduling()
    # the same loop as the gateway workers (uvloop)
    run_loop(_serve(pipe, port, settings.lag_log_dir), settings.event_loop)


def batch_scheduling() -> None:
    """``SCHED_BATCH``: a woken generator does not preempt a gateway worker mid-fanout.

    In production the clients are other machines; here they share 2 cores with the gateway,
    and under the default policy every frame that wakes a sleeping generator may preempt the
    worker writing it (hundreds of involuntary switches per second per worker). A batch task
    still gets its full share of CPU and runs on an idle core at once; it only waits for the
    running task's slice instead of cutting it. Receipt times are taken as before, so any wait
    this adds is counted in the latency, against the gateway."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


async def _serve(pipe: Any, port: int, lag_log_dir: Any) -> None:
    from runtime.eventloop import watch_lag

    gen = Generator(port)
    loop = asyncio.get_running_loop()
    lag = loop.create_task(watch_lag(lag_log_dir, "client"))  # noqa: F841 - diagnostics, runs until exit
    while True:
        cmd, arg = await loop.run_in_executor(None, pipe.recv)
        if cmd == "connect":
            await gen.connect(arg["matches"], arg["rate"])
            reply: Any = len(gen.conns)
        elif cmd == "measure":
            gen.totals.reset()
            gen.measure = arg
            reply = True
        elif cmd == "switch":
            gen.switch(arg)
            reply = True
        elif cmd == "storm":
            await gen.storm(arg)
            reply = True
        elif cmd == "progress":
            reply = gen.totals.covered
        elif cmd == "settled":
            reply = gen.settled(arg)
        elif cmd == "report":
            reply = gen.report(arg)
        elif cmd == "abort":
            gen.abort_all()
            reply = True
        elif cmd == "chaos":  # stumpcast chaos: reopen lost connections, track receipts
            gen.reconnect = gen.track = bool(arg)
            reply = True
        elif cmd == "counts":
            reply = gen.counts()
        elif cmd == "region":  # bench flags: subscribe to flags from this region
            gen.region = arg
            reply = True
        elif cmd == "flags":  # bench flags: receipt times of a version, P2 count
            t = gen.totals
            reply = {"times": t.flags.get(arg, array("d")).tobytes(), "p2": t.p2,
                     "on": t.flags_on.get(arg, 0),
                     "latency": t.latency.tobytes()}

        else:
            pipe.send(True)
            return
        pipe.send(reply)
