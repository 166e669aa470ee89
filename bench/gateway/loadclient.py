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

A generator speaks one protocol: the gateway's (``stumpcast``) or, against the peer of
``--peer centrifugo``, Centrifugo's (``centrifugo_frames``); a publication's data is our update
record, counted by the same accounting. Under ``--compete`` it keeps the default scheduling
policy, as a real process competing for the cores would (``scheduling``).
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

from bench.gateway import centrifugo_frames as peer
from bench.gateway.clientcards import Cards

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
        self.pings = 0             # Centrifugo's pings answered (``{}`` back)
        self.peer_errors = 0       # Centrifugo's error replies (connect or subscribe refused)
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
                 "retrying", "card", "ready")

    def __init__(self, gen: Generator, match: str) -> None:
        self.gen = gen
        self.match = match
        name = peer.peer_channel(match) if gen.protocol == "centrifugo" else f"match:{match}"
        self.channel = name.encode()
        self.ready = False     # its subscription was confirmed (``subscribed`` / the reply)
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
        transport.write(b"GET " + self.gen.path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
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
            if self.gen.protocol == "centrifugo":  # subscribes once the connect is answered
                self.send(peer.connect_command())
            else:
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
    def __init__(self, port: int, protocol: str = "stumpcast", path: bytes = b"/ws") -> None:
        self.port = port
        self.protocol = protocol  # "stumpcast" (the gateway) or "centrifugo" (the peer)
        self.path = path
        self.pushes = peer.Pushes(ts_seconds)
        self.last_error = ""      # the last error reply of the peer (shown in the report)
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
        if self.protocol == "centrifugo":
            self.on_peer(conn, payload, now)
            return
        if self.region is not None and self.on_flags_or_p2(payload, now):
            return
        msg, sent = self.heads.get(payload)
        kind = msg.get("type")
        if kind == "update":
            if not self._update(conn, msg, payload):
                return
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
            conn.ready = True
            if msg["recovered"]:
                t.recovered += 1
            else:
                t.not_recovered += 1
            return
        else:
            return
        self._receipt(conn, msg["seq"], sent, now)

    def _update(self, conn: Conn, msg: dict[str, Any], payload: bytes | None) -> bool:
        """Continuity of one update at ``conn``; False when it is a duplicate (ignored)."""
        t = self.totals
        if msg["prev_seq"] != conn.pos or msg["epoch"] != conn.epoch:
            if msg["seq"] <= conn.pos:
                return False
            t.gaps += 1
            conn.card = 0        # not the update that follows its card: the card is lost
        elif self.track and payload is not None:
            conn.card = self.cards.step(conn.card, payload)
        t.updates += 1
        t.covered += msg["seq"] - conn.pos
        conn.pos = msg["seq"]
        return True

    def _receipt(self, conn: Conn, seq: int, sent: float, now: float) -> None:
        t = self.totals
        if self.track:
            self._track(conn.match, conn.pos, now)
        if self.measure and sent:
            lat = (now - sent) * 1000
            t.latency.append(lat)
            key = (conn.match, seq)
            if lat > t.last.get(key, 0.0):
                t.last[key] = lat

    def on_peer(self, conn: Conn, payload: bytes, now: float) -> None:
        """A Centrifugo frame: its replies, one per line; a publication of an update record
        goes through the same continuity and latency accounting as the gateway's updates."""
        for line in peer.lines(payload):
            if line.startswith(b'{"push"'):
                hit = self.pushes.get(line)
            elif line == peer.PING:
                conn.send(peer.PONG)
                self.totals.pings += 1
                continue
            else:
                hit = self._peer_reply(conn, line)
            if hit is None:
                continue
            msg, sent = hit
            if not conn.pos and not conn.epoch:
                # no history and no snapshot on the peer: its first publication is where this
                # client starts, and every one after must follow it
                conn.pos, conn.epoch = msg["prev_seq"], msg["epoch"]
            if self._update(conn, msg, None):
                self._receipt(conn, msg["seq"], sent, now)

    def _peer_reply(self, conn: Conn, line: bytes) -> tuple[dict[str, Any], float] | None:
        kind, value = peer.classify(line)
        if kind == "connect":
            conn.send(peer.subscribe_command(conn.channel.decode()))
        elif kind == "subscribe":
            conn.ready = True
        elif kind == "error":
            self.totals.peer_errors += 1
            self.last_error = f"reply to command {value[0]}: {value[1]}"
        elif kind == "other" and "push" in value:  # a push laid out otherwise: decode it here
            data = peer.publication(value)
            return None if data is None else (data[0], ts_seconds(data[1]) if data[1] else 0.0)
        return None

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
                "latency": t.latency.tobytes(), "last": t.last, "pings": t.pings,
                "errors": t.peer_errors, "last_error": self.last_error}


def main(pipe: Any, port: int, settings: Any, compete: bool = False) -> None:
    from gateway.workers import raise_fd_limit
    from runtime.eventloop import run_loop

    raise_fd_limit()
    scheduling(compete)
    # the same loop as the gateway workers (uvloop)
    run_loop(_serve(pipe, port, settings.lag_log_dir), settings.event_loop)


def scheduling(compete: bool) -> None:
    """``--compete``: the default policy, as a real process on the gateway's machine would
    run (issue #21 measured the tail under that), else ``SCHED_BATCH``."""
    if not compete:
        batch_scheduling()


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
        elif cmd == "target":  # the server the next connects go to, and its protocol
            gen.port, gen.protocol, gen.path = arg["port"], arg["protocol"], arg["path"]
            reply = True
        elif cmd == "ready":   # clients whose subscription the server confirmed
            reply = sum(1 for c in gen.conns if c.ready and c.open)
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
