"""The edge benchmark's live origin: the real media origin and publisher, synthetic segments.

``python -m bench.edge_origin --dir D --port P``: every target duration it publishes one
segment per rendition through ``media.publisher.Publisher`` (the worker's own code: segments
moved in, media playlists, master, state, lint) and serves the folder with
``media.origin.build_app`` (the worker's Cache-Control per object). Only the segments' bytes are
synthetic (a fixed size per rendition, no ffmpeg), so the benchmark measures the edges, not the
encoder, and the loopback carries requests rather than video. Every request is counted per
object class at ``GET /bench/counts``: what the origin itself saw, background refreshes included.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import time
from pathlib import Path

from aiohttp import web

from media.ladder import Ladder, parse_rungs
from media.origin import build_app
from media.publisher import Publisher, StagedSet
from runtime.endpoints import Health

CLASSES = ("master", "playlist", "segment", "other")


def object_class(path: str) -> str:
    """master, playlist, segment or other, for an HLS path (the origin's or an edge's)."""
    route = path.split("?", 1)[0]
    if route.endswith("/master.m3u8"):
        return "master"
    if route.endswith(".m3u8"):
        return "playlist"
    if route.endswith(".ts"):
        return "segment"
    return "other"


class SyntheticLive:
    def __init__(self, folder: Path, ladder: Ladder, sizes: dict[str, int],
                 window: int) -> None:
        self.staging = folder / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.publisher = Publisher(folder / "origin", ladder, "bench-edge", window)
        self.sizes = sizes
        self.td = ladder.segment_seconds
        self.anchor_ms = int(time.time() * 1000)
        self.index = 0

    def publish_next(self) -> None:
        paths = {}
        for name, size in self.sizes.items():
            path = self.staging / f"{name}-{self.index}.ts"
            # TS packets with a sync byte each: what a player's demuxer would look for.
            path.write_bytes((b"\x47" + os.urandom(187)) * max(size // 188, 1))
            paths[name] = path
        staged = StagedSet(index=self.index, anchor_ms=self.anchor_ms,
                           first_pts=self.index * self.td, end=(self.index + 1) * self.td,
                           paths=paths, sizes={n: p.stat().st_size for n, p in paths.items()},
                           new_launch=self.index == 0)
        _, problems = self.publisher.publish(staged)
        if problems:
            raise RuntimeError(f"synthetic playlists refused by the linter: {problems}")
        self.index += 1


async def serve(args: argparse.Namespace) -> None:
    ladder = Ladder(parse_rungs(args.ladder), segment_seconds=args.td)
    sizes = {r.name: r.video_kbps * 1000 // 8 * args.td * args.scale // 100 for r in ladder.rungs}
    live = SyntheticLive(Path(args.dir), ladder, sizes, args.window)
    for _ in range(args.prefill):  # a live window to start from, like a stream already on air
        live.publish_next()
    counts: collections.Counter[str] = collections.Counter()

    @web.middleware
    async def count(request: web.Request, handler: object) -> web.StreamResponse:
        if request.path.startswith("/hls/"):
            counts[object_class(request.path)] += 1
        return await handler(request)  # type: ignore[operator]

    async def report(_request: web.Request) -> web.Response:
        return web.json_response({**{c: counts[c] for c in CLASSES},
                                  "published": live.index, "sizes": sizes})

    health = Health(lambda: b"", lambda: True)
    app = build_app(live.publisher.origin, args.td, health)
    app.middlewares.append(count)
    app.router.add_get("/bench/counts", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    next_at = time.monotonic() + args.td
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), max(next_at - time.monotonic(), 0))
        except TimeoutError:
            live.publish_next()
            next_at += args.td
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--td", type=int, default=2, help="target duration, seconds")
    p.add_argument("--ladder", default="720p,480p,360p")
    p.add_argument("--scale", type=int, default=2,
                   help="segment size in %% of the rung's bit rate x duration (default 2)")
    p.add_argument("--window", type=int, default=30, help="segments per media playlist")
    p.add_argument("--prefill", type=int, default=5, help="segments published before serving")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
