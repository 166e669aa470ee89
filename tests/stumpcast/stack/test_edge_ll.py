"""LL-HLS through a real caching edge (Debian's nginx from the one template, `stumpcast stack up
--only cdn-a`) in front of the real LL origin (``media.ll_origin``), fed parts by the test.

What the template promises for LL-HLS (docs/operations.md, "The edge"): blocking playlist
requests are held through the edge and collapsed to one origin request per msn/part, cached
under their own query (in any order), and parts are cached like segments.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_edge import nginx

from media.ladder import Ladder, parse_rungs
from media.ll_origin import LiveOrigin
from media.ll_publisher import LLPublisher, StagedPart
from media.llhls import LLConfig
from media.origin import build_app
from runtime.endpoints import Health, serve

pytestmark = [pytest.mark.stack]

T0 = 1_800_000_000_000


class Feeder:
    """Publishes the next 0.4 s part of a one-rung ladder (5 parts per 2 s segment)."""

    def __init__(self, folder: Path) -> None:
        self.pub = LLPublisher(folder, Ladder(parse_rungs("360p")), "m", 50, None,
                               LLConfig(2, 0.4))
        self.pub.load()
        self.pub.write_init("t", {"360p": b"init"})
        self.n = 0

    def part(self) -> None:
        self.pub.publish_part(StagedPart("t", T0 + self.n * 400, 0.4, self.n % 5 == 0,
                                         {"360p": bytes([self.n % 256]) * 5000}, self.n == 0))
        self.n += 1


@pytest.fixture
async def ll_origin(tmp_path: Path) -> AsyncIterator[tuple[Feeder, collections.Counter[str], int]]:
    feeder = Feeder(tmp_path / "origin")
    for _ in range(11):  # segments 0 and 1 whole, part 2.0 open
        feeder.part()
    counts: collections.Counter[str] = collections.Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        counts[request.path_qs] += 1
        return await handler(request)

    app = build_app(tmp_path / "origin", 2, Health(lambda: b"", lambda: True),
                    LiveOrigin(feeder.pub, 100))
    app.middlewares.append(count)
    runner = await serve(app, 0)
    yield feeder, counts, runner.addresses[0][1]
    await runner.cleanup()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], str, float]:
    began = time.monotonic()
    async with http.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.text(errors="replace"), \
            time.monotonic() - began


async def test_blocking_requests_are_held_collapsed_and_cached_by_query(
        private_stack: Any, ll_origin: tuple[Feeder, collections.Counter[str], int]) -> None:
    nginx()
    feeder, counts, port = ll_origin
    private_stack.env.update({"STUMPCAST_MEDIA_HTTP_PORT": str(port),
                              "STUMPCAST_GATEWAY_PORT": str(port)})
    out = await asyncio.to_thread(private_stack.cli, "stack", "up", "--only", "cdn-a",
                                  "--no-init")
    assert out.returncode == 0, out.stderr
    edge = f"http://127.0.0.1:{private_stack.env['STUMPCAST_STACK_CDN_A_PORT']}/hls/360p/"
    blocking = "index.m3u8?_HLS_msn=2&_HLS_part=2"
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.gather(*(get(http, edge + blocking) for _ in range(20)))
        await asyncio.sleep(0.5)
        feeder.part()  # 2.1
        # 2.2, what they wait for, 3.5 s on: longer than the old 3 s lock timeout, after
        # which nginx sends every waiter upstream (and caches none of their answers).
        await asyncio.sleep(3.0)
        feeder.part()
        answers = await waiting
        assert {status for status, _, _, _ in answers} == {200}
        assert all('URI="2.2-t.m4s"' in text for _, _, text, _ in answers)
        assert min(took for _, _, _, took in answers) >= 3.4  # held, not answered stale
        assert counts["/hls/360p/" + blocking] == 1, counts  # collapsed at the edge
        # Later viewers asking for the same msn/part, in either order, get the cached answer.
        for query in (blocking, "index.m3u8?_HLS_part=2&_HLS_msn=2&viewer=7"):
            status, headers, text, _ = await get(http, edge + query)
            assert status == 200 and headers["X-Cache"] == "HIT" and 'URI="2.2-t.m4s"' in text
        assert headers["Cache-Control"] == "public, max-age=12"  # 6 target durations
        # Parts are cached like segments; a bad directive is the origin's 400, not cached.
        assert (await get(http, edge + "2.1-t.m4s"))[1]["X-Cache"] == "MISS"
        assert (await get(http, edge + "2.1-t.m4s"))[1]["X-Cache"] == "HIT"
        status, _, text, _ = await get(http, edge + "index.m3u8?_HLS_part=1")
        assert status == 400 and "_HLS_msn" in text
