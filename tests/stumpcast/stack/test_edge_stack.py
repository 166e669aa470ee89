"""Two real edges (Debian's nginx, started by `stumpcast stack up --only cdn-a,cdn-b` in a
private run folder) in front of the real media origin app and a real gateway on Redis (its
own process, so the outage below is a real one).

What is checked is what the cache policy in docs/operations.md promises: one origin fetch per
object per edge however many ask at once (collapsing), one refresh at a time for playlists
that expire every second, answers with credentials never cached, /ws passed through, the last
copies served (marked STALE) when the origin and the gateway are gone, and the fault switch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_edge import nginx

from media.origin import build_app
from runtime.endpoints import Health, serve
from tests.gateway.conftest import connect, match_id, redis, writer  # noqa: F401

pytestmark = [pytest.mark.stack]

MASTER = ("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n"
          "#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=640x360\n360p/index.m3u8\n")
PLAYLIST = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXTINF:2.000,\n0.ts\n")


class Origin:
    """The media worker's origin app on a folder, counting what reaches it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counts: collections.Counter[str] = collections.Counter()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        (self.folder / "360p").mkdir(parents=True, exist_ok=True)
        (self.folder / "master.m3u8").write_text(MASTER)
        (self.folder / "360p" / "index.m3u8").write_text(PLAYLIST)
        (self.folder / "360p" / "0.ts").write_bytes(b"\x47" * 188 * 700)

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.counts[request.path] += 1
            return await handler(request)

        app = build_app(self.folder, 2, Health(lambda: b"", lambda: True))
        app.middlewares.append(count)
        self.runner = await serve(app, port)
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    o = Origin(tmp_path / "origin")
    await o.start()
    yield o
    await o.stop()


class GatewayProc:
    """``stumpcast gateway serve`` as a process of its own: stopping it is what an outage is."""

    def __init__(self, settings: Any, folder: Path) -> None:
        with socket.socket() as sock:  # a free port ("conftest" names several modules here)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        with socket.socket() as sock:  # and an admin port of its own (/metrics)
            sock.bind(("127.0.0.1", 0))
            admin = sock.getsockname()[1]
        self.env = {**os.environ, "STUMPCAST_GATEWAY_PORT": str(self.port),
                    "STUMPCAST_GATEWAY_ADMIN_PORT": str(admin),
                    "STUMPCAST_REDIS_URL": settings.redis_url, "STUMPCAST_LOG_FORMAT": "text",
                    "STUMPCAST_GATEWAY_PANIC_DIR": str(folder / "panic"),
                    "STUMPCAST_GATEWAY_PANIC_FLAG": str(folder / "PANIC")}
        self.log = folder / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "stumpcast", "gateway", "serve"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         process_group=0)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                await asyncio.sleep(0.2)
        raise AssertionError(f"gateway not ready in 60 s: {self.log}")

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` (0: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            if grace > 0:
                os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(self.proc.wait, grace)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, 10)


@pytest.fixture
async def gateway(settings: Any, redis: Any, tmp_path: Path) -> AsyncIterator[Any]:  # noqa: F811
    gw = GatewayProc(settings, tmp_path)
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def edges(private_stack: Any, origin: Origin, gateway: Any) -> AsyncIterator[dict[str, int]]:
    nginx()
    env = {"STUMPCAST_MEDIA_HTTP_PORT": str(origin.port),
           "STUMPCAST_GATEWAY_PORT": str(gateway.port)}
    private_stack.env.update(env)
    out = await asyncio.to_thread(private_stack.cli, "stack", "up", "--only", "cdn-a,cdn-b",
                                  "--no-init")
    assert out.returncode == 0, out.stderr
    yield {"cdn-a": int(private_stack.env["STUMPCAST_STACK_CDN_A_PORT"]),
           "cdn-b": int(private_stack.env["STUMPCAST_STACK_CDN_B_PORT"])}
    await asyncio.to_thread(private_stack.cli, "stack", "down")


async def get(session: aiohttp.ClientSession, port: int, path: str,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_collapsing_herds_credentials_ws_panic_and_faults(
        edges: dict[str, int], origin: Origin, gateway: Any, writer: Any,  # noqa: F811
        match_id: str, private_stack: Any) -> None:  # noqa: F811
    a, b = edges["cdn-a"], edges["cdn-b"]
    limits = aiohttp.TCPConnector(limit=300)
    async with aiohttp.ClientSession(connector=limits) as http:
        # 200 players ask for a new segment at once: one fetch per edge reaches the origin.
        seg = "/hls/360p/0.ts"
        answers = await asyncio.gather(*(get(http, a if i % 2 else b, seg) for i in range(200)))
        assert {s for s, _, _ in answers} == {200}
        assert {len(body) for _, _, body in answers} == {188 * 700}
        assert origin.counts[seg] == 2, origin.counts

        # A playlist that expires every second, asked 50 times every 100 ms for 4 s, on one
        # edge: refreshed one request at a time (about one a second), never a herd.
        playlist = "/hls/360p/index.m3u8"
        statuses: collections.Counter[str] = collections.Counter()
        for _ in range(40):
            for _, headers, _ in await asyncio.gather(*(get(http, a, playlist)
                                                         for _ in range(50))):
                statuses[headers["X-Cache"]] += 1
            await asyncio.sleep(0.1)
        assert 3 <= origin.counts[playlist] <= 8, (origin.counts, statuses)
        # Only the very first was a miss; the refreshes went on behind STALE/UPDATING copies.
        assert statuses["MISS"] == 1 and set(statuses) <= {"MISS", "HIT", "STALE", "UPDATING"}
        assert statuses["HIT"] > 1500, statuses

        # The scorecard API: cached; a request with credentials is neither served from nor
        # stored in the cache, so an authorised answer is never shared.
        await writer.publish(match_id, {"innings": [{"runs": 7}]})
        card = f"/v1/matches/{match_id}/scorecard"
        status, headers, _ = await get(http, a, card, {"Authorization": "Bearer x"})
        assert status == 200 and headers["X-Cache"] == "BYPASS"
        status, headers, _ = await get(http, a, card)
        assert headers["X-Cache"] == "MISS"  # the authorised answer above was not stored
        status, headers, body = await get(http, a, card)
        assert headers["X-Cache"] == "HIT" and b'"runs":7' in body
        assert "Date" in headers and headers["Cache-Control"].startswith("public, max-age=1")

        # The WebSocket goes through the edge to the gateway, uncached.
        peer = await connect(a)
        replies = await peer.subscribe(f"match:{match_id}")
        assert replies[-1]["type"] == "subscribed"
        assert (await peer.recv())["card"] == {"innings": [{"runs": 7}]}
        await peer.close()

        # Panic: origin and gateway gone. The edges keep serving their last copies, STALE,
        # with the gateway's own Date (how old the copy is).
        made = headers["Date"]
        await origin.stop()
        await gateway.stop(grace=0)  # a crash
        await asyncio.sleep(2.5)  # past every max-age
        for path in (playlist, card, seg):
            status, headers, _ = await get(http, a, path)
            assert status == 200, path
            assert headers["X-Cache"] in ("STALE", "HIT"), (path, headers)
        assert headers["X-Cache"] == "HIT"  # the segment: immutable, still fresh
        status, headers, body = await get(http, a, card)
        assert headers["X-Cache"] == "STALE" and headers["Date"] == made and b"runs" in body
        status, _, _ = await get(http, a, "/hls/360p/never.ts")
        assert status == 502  # nothing cached, nothing to serve

    # Faults: cdn-a answers 503 for HLS (without consulting its cache), cdn-b is untouched.
    out = private_stack.cli("stack", "fault", "cdn-a", "--status", "503")
    assert out.returncode == 0 and out.stdout.strip() == "cdn-a fault=status 503", out.stderr
    async with aiohttp.ClientSession() as http:
        assert (await get(http, a, seg))[0] == 503
        assert (await get(http, b, seg))[0] == 200
    assert private_stack.cli("stack", "fault", "cdn-a", "--clear").returncode == 0
    async with aiohttp.ClientSession() as http:
        assert (await get(http, a, seg))[0] == 200
    bad = private_stack.cli("stack", "fault", "cdn-a", "--throttle", "lots")
    assert bad.returncode == 1 and "throttle 'lots'" in bad.stderr and "Traceback" not in bad.stderr
