"""A simulated audience for ``stumpcast bench edge``: HLS players and scorecard pollers.

``python -m bench.edge_load --players N --edges PORT,PORT --out FILE ...`` writes one JSON
document.

Each simulated player joins at a random instant of the ramp, on one edge (alternately: an even
split between the two CDNs), with one rendition (half the top rung, a third the middle, the
rest the lowest, fixed per player: the ABR part of a player is not what loads an origin). It
then does what hls.js does for a live stream with default settings: the master playlist once,
its media playlist every target duration, and each segment that playlist newly lists, once;
and it polls the scorecard API every ``--poll`` seconds (a score widget without a WebSocket).

Requests of many players share keep-alive connections (``--conns`` per edge, one request in
flight on each): an edge's cache answers the same whatever connection a request comes on, and
a Python process cannot hold 10,000 sockets' worth of CPU. Each request records its lateness
(start - the instant the player's schedule wanted it), so an overloaded generator shows as
late requests rather than as a smaller audience than claimed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.edge_origin import object_class
from runtime.eventloop import run_loop
from schemas.settings import Settings

WEIGHTS = (0.5, 0.33, 0.17)  # share of players on each rung, top first


@dataclass
class Player:
    ident: int
    edge: int
    playlist: bytes
    last_msn: int = -1


@dataclass
class Tally:
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    cache: collections.Counter[str] = field(default_factory=collections.Counter)
    bytes: collections.Counter[str] = field(default_factory=collections.Counter)
    late_ms: list[float] = field(default_factory=list)
    took_ms: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))

    def see(self, cls: str, status: int, xcache: str, size: int, late: float,
            took: float) -> None:
        self.requests[cls] += 1
        if status >= 400 or status < 200:
            self.errors[f"{cls}:{status}"] += 1
        self.cache[f"{cls}:{xcache or '-'}"] += 1
        self.bytes[cls] += size
        self.late_ms.append(late * 1000)
        self.took_ms[cls].append(took * 1000)


def _header(head: bytes, name: bytes) -> bytes | None:
    """A header's value; nginx writes every name in one casing (``Content-Length``)."""
    at = head.find(b"\r\n" + name + b": ")
    if at < 0:
        return None
    start = at + len(name) + 4
    stop = head.find(b"\r\n", start)
    return head[start:stop if stop >= 0 else len(head)]


def _chunked(buf: bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``at``: (body, end), or None while incomplete."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(bytes(buf[at:eol]).split(b";")[0], 16)
        if len(buf) < eol + 2 + size + 2:
            return None
        parts.append(bytes(buf[eol + 2:eol + 2 + size]))
        at = eol + 2 + size + 2
        if size == 0:
            return b"".join(parts), at


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, a request at a time. A protocol rather than
    streams: a generator that must make 10,000 players' requests spends its CPU on little
    else than parsing answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, str, bytes, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end + 2])
        length = _header(head, b"Content-Length")
        if length is not None:
            stop = end + 4 + int(length)
            if len(self.buf) < stop:
                return
            body = bytes(self.buf[end + 4:stop])
        else:
            got = _chunked(self.buf, end + 4)
            if got is None:
                return
            body, stop = got
        del self.buf[:stop]
        xcache = (_header(head, b"X-Cache") or b"").decode()
        gz = _header(head, b"Content-Encoding") == b"gzip"
        self.waiter.set_result((int(head[9:12]), xcache, body, gz))
        if _header(head, b"Connection") == b"close":
            self.close()

    async def get(self, path: str) -> tuple[int, str, bytes, bool]:
        """(status, X-Cache, body, gzip) of one GET."""
        loop = asyncio.get_running_loop()
        if self.transport is None:
            self.buf.clear()
            await loop.create_connection(lambda: self, "127.0.0.1", self.port)
        assert self.transport is not None
        self.waiter = loop.create_future()
        self.transport.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n"
                             "Accept-Encoding: gzip\r\n\r\n".encode())
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.transport = None


class Audience:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ports = [int(p) for p in args.edges.split(",")]
        self.rungs = args.rungs.split(",")
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.heap: list[tuple[float, int, int, str]] = []
        self.players: list[Player] = []
        self.queues: list[asyncio.Queue[tuple[float, int, str]]] = [
            asyncio.Queue() for _ in self.ports]
        self.parsed: dict[bytes, int] = {}
        self.counter = 0
        self.t0 = 0.0
        self.end = 0.0

    def schedule(self, at: float, player: int, action: str) -> None:
        if at < self.end:
            self.counter += 1
            heapq.heappush(self.heap, (at, self.counter, player, action))

    def add_players(self) -> None:
        a = self.args
        for i in range(a.players):
            ident = a.offset + i
            rung = self.rng.choices(self.rungs, WEIGHTS[:len(self.rungs)])[0]
            self.players.append(Player(ident, ident % len(self.ports),
                                       f"/hls/{rung}/index.m3u8".encode()))
            join = self.t0 + self.rng.uniform(0, a.ramp)
            self.schedule(join, i, "master")
            self.schedule(join + self.rng.uniform(0, a.poll), i, "poll")

    def path(self, player: Player, action: str) -> str:
        if action == "master":
            return "/hls/master.m3u8"
        if action == "playlist":
            return player.playlist.decode()
        if action == "poll":
            return f"/v1/matches/{self.args.match}/scorecard"
        rung = player.playlist.decode().rsplit("/", 2)[1]
        return f"/hls/{rung}/{action}.ts"

    def done(self, index: int, action: str, due: float, body: bytes, gz: bool) -> None:
        """What the player does next, as hls.js would."""
        p, td = self.players[index], self.args.td
        if action == "master":
            self.schedule(time.monotonic(), index, "playlist")
        elif action == "playlist":
            newest = self.newest(body, gz)
            first = newest if p.last_msn < 0 else max(p.last_msn + 1, newest - 2)
            for msn in range(first, newest + 1):  # every segment new to it, as hls.js would
                self.schedule(time.monotonic(), index, str(msn))
            p.last_msn = max(p.last_msn, newest)
            self.schedule(due + td, index, "playlist")
        elif action == "poll":
            self.schedule(due + self.args.poll, index, "poll")

    def newest(self, body: bytes, gz: bool) -> int:
        msn = self.parsed.get(body)
        if msn is None:
            text = zlib.decompress(body, 31) if gz else body
            last = [ln for ln in text.split(b"\n") if ln and not ln.startswith(b"#")]
            msn = int(last[-1].split(b".")[0]) if last else -1
            if len(self.parsed) > 2000:
                self.parsed.clear()
            self.parsed[body] = msn
        return msn

    async def dispatch(self) -> None:
        while self.heap or time.monotonic() < self.end:
            now = time.monotonic()
            while self.heap and self.heap[0][0] <= now:
                due, _, index, action = heapq.heappop(self.heap)
                self.queues[self.players[index].edge].put_nowait((due, index, action))
            wait = (self.heap[0][0] - now) if self.heap else 0.05
            await asyncio.sleep(min(max(wait, 0.0), 0.05))

    async def worker(self, edge: int) -> None:
        conn = Conn(self.ports[edge])
        queue = self.queues[edge]
        while True:
            due, index, action = await queue.get()
            path = self.path(self.players[index], action)
            cls = "api" if action == "poll" else object_class(path)
            start = time.monotonic()
            try:
                status, xcache, body, gz = await conn.get(path)
            except (OSError, ValueError):
                conn.close()
                self.tally.see(cls, 0, "", 0, start - due, time.monotonic() - start)
                continue
            self.tally.see(cls, status, xcache, len(body), start - due,
                           time.monotonic() - start)
            if status in (200, 304):
                self.done(index, action, due, body, gz)

    async def run(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        self.end = self.t0 + self.args.seconds
        self.add_players()
        workers = [asyncio.create_task(self.worker(e)) for e in range(len(self.ports))
                   for _ in range(self.args.conns)]
        await self.dispatch()
        deadline = time.monotonic() + 10
        while any(q.qsize() for q in self.queues) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        t = self.tally
        return {"players": self.args.players, "seconds": time.monotonic() - self.t0,
                "requests": dict(t.requests), "errors": dict(t.errors), "cache": dict(t.cache),
                "bytes": dict(t.bytes), "late_ms": _sample(t.late_ms, 20000, self.rng),
                "took_ms": {c: _sample(v, 20000, self.rng) for c, v in t.took_ms.items()}}


def _sample(values: list[float], keep: int, rng: random.Random) -> list[float]:
    return values if len(values) <= keep else rng.sample(values, keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--players", type=int, required=True)
    p.add_argument("--offset", type=int, default=0, help="first player id (several processes)")
    p.add_argument("--edges", required=True, help="edge ports, comma separated")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--ramp", type=float, default=10.0, help="players join over this long")
    p.add_argument("--td", type=float, default=2.0, help="target duration of the stream")
    p.add_argument("--poll", type=float, default=5.0, help="scorecard poll interval, seconds")
    p.add_argument("--match", required=True, help="match id of the scorecard")
    p.add_argument("--rungs", default="720p,480p,360p")
    p.add_argument("--conns", type=int, default=64, help="connections per edge")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="file for the JSON result")
    args = p.parse_args()
    result = run_loop(Audience(args).run(), Settings.from_env().event_loop)
    Path(args.out).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
