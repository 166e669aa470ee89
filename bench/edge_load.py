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


class Conn:
    """One keep-alive HTTP/1.1 connection; a request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, str, bytes, bool]:
        """(status, X-Cache, body, gzip) of one GET."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n"
                          "Accept-Encoding: gzip\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, xcache, chunked, gz, close = 0, "", False, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            key = name.lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"x-cache":
                xcache = value.strip().decode()
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"content-encoding":
                gz = b"gzip" in value.lower()
            elif key == b"connection":
                close = b"close" in value.lower()
        body = await self._chunks() if chunked else await self.reader.readexactly(length)
        if close:
            self.close()
        return status, xcache, body, gz

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


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
            if newest > p.last_msn:
                p.last_msn = newest
                self.schedule(time.monotonic(), index, str(newest))
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
            except (OSError, asyncio.IncompleteReadError, ValueError):
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
