"""Glass-to-glass in Chromium: the page's own player reads the clock burned into each frame.

The synthetic source burns its capture instant into every frame twice: as text and as a 48-bit
barcode of the epoch milliseconds (``media.ffmpeg_args``). A small page, served here, plays the
live master with the page's real ``Player`` (gateway/web/static/js/player.js: the same hls.js
settings as the match page) and, for every frame Chromium presents
(``requestVideoFrameCallback``), copies the barcode strip to a canvas and decodes it:
glass-to-glass = the frame's expected display time (wall clock) minus its burned capture
instant. Stalls are ``waiting`` events after playback began. Ball markers (EXT-X-DATERANGE)
are timed on the page too: the first frame whose burned clock reaches a marker's START-DATE is
when the video shows that ball.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from aiohttp import web

from gateway.web.static import resolve

PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<video id="v" muted playsinline style="width:640px"></video>
<canvas id="c" width="384" height="8" style="display:none"></canvas>
<script type="module">
import { Player } from "/app/js/player.js";
const BITS = 48, DIV = 80, HDIV = 45;
const video = document.getElementById("v");
const ctx = document.getElementById("c").getContext("2d", { willReadFrequently: true });
const out = { glass: [], bad: 0, stalls: 0, stallMs: 0, playing: false, markers: {}, shown: {},
              errors: [], levels: [] };
window.bench = out;
const player = new Player(video, {}, "__SRC__");
player.start();
let stallAt = null;
video.addEventListener("playing", () => {
  out.playing = true;
  if (stallAt !== null) { out.stallMs += performance.now() - stallAt; stallAt = null; }
});
video.addEventListener("waiting", () => {
  if (out.playing && stallAt === null) { out.stalls += 1; stallAt = performance.now(); }
});
const hls = player.hls;
hls.on("hlsError", (_e, d) => out.errors.push(`${d.type}:${d.details}:${d.fatal}`));
hls.on("hlsLevelSwitched", (_e, d) => out.levels.push(d.level));
hls.on("hlsLevelUpdated", (_e, d) => {
  const now = Date.now();
  for (const r of Object.values(d.details.dateRanges || {})) {
    if (r && r.startDate && !(r.id in out.markers)) {
      out.markers[r.id] = [r.startDate.getTime(), now];
    }
  }
});
let n = 0;
function frame(_now, meta) {
  video.requestVideoFrameCallback(frame);
  if (n++ % 2) return;  // every other frame: enough samples, half the canvas work
  const w = video.videoWidth, h = video.videoHeight;
  if (!w) return;
  ctx.drawImage(video, 0, 0, w * BITS / DIV, h / HDIV, 0, 0, BITS * 8, 8);
  const px = ctx.getImageData(0, 4, BITS * 8, 1).data;
  let v = 0;
  for (let i = 0; i < BITS; i++) v = v * 2 + (px[(i * 8 + 4) * 4] > 128 ? 1 : 0);
  const shown = performance.timeOrigin + meta.expectedDisplayTime;
  const glass = shown - v;
  if (!(glass > -1000 && glass < 60000)) { out.bad += 1; return; }
  out.glass.push([shown, glass]);
  for (const [id, [start]] of Object.entries(out.markers)) {
    if (!(id in out.shown) && v >= start) out.shown[id] = shown;
  }
}
video.requestVideoFrameCallback(frame);
</script></body></html>"""


class PageServer:
    """The bench page, the page's modules and hls.js, on a free loopback port (own thread)."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/":
            return web.Response(text=PAGE.replace("__SRC__", self.src), content_type="text/html")
        file = resolve(request.path)
        if file is None or not file.is_file():
            return web.Response(status=404, text=f"no file {request.path}\n")
        kind = "text/javascript" if file.suffix in {".js", ".mjs"} else "text/css"
        return web.Response(body=file.read_bytes(), content_type=kind)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> PageServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def watch(master_url: str, seconds: float, chromium: str = "/usr/bin/chromium") -> dict[str, Any]:
    """Play ``master_url`` in headless Chromium for ``seconds``; the page's measurements."""
    import urllib.request

    from playwright.sync_api import sync_playwright

    deadline = time.time() + 60
    while time.time() < deadline:  # a viewer opens the page of a stream already live
        with contextlib.suppress(OSError), urllib.request.urlopen(master_url, timeout=2):
            break
        time.sleep(0.5)
    with PageServer(master_url) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{server.port}/")
            end = time.time() + seconds
            while time.time() < end:
                time.sleep(min(5.0, max(end - time.time(), 0)))
            result: dict[str, Any] = dict(page.evaluate("() => window.bench"))
            result["page_errors"] = errors
        finally:
            with contextlib.suppress(Exception):
                browser.close()
    return result


def settle(glass: list[list[float]], warmup_s: float = 10.0) -> list[float]:
    """Glass-to-glass samples in seconds, without the first ``warmup_s`` of playback (the
    player's start-up, where it seeks to the live edge)."""
    if not glass:
        return []
    start = glass[0][0]
    return [g / 1000 for shown, g in glass if shown - start >= warmup_s * 1000]


def spoiler_windows(pushed: dict[str, float], shown: dict[str, float],
                    glass: list[list[float]], warmup_s: float = 10.0) -> list[float]:
    """Per ball: video display time minus score push time, seconds (how long a fan can know the
    score before the video shows the ball). Balls pushed before the player settled (the first
    ``warmup_s`` of playback, as ``settle``) are left out: they measure the page's start."""
    if not glass:
        return []
    settled = glass[0][0] / 1000 + warmup_s
    return [(shown[i] / 1000) - pushed[i] for i in pushed if i in shown and pushed[i] >= settled]
