"""The HTTP origin: HLS objects with per-kind Cache-Control, beside /metrics, /healthz, /readyz
(``runtime.endpoints``, on the same app and port).

Cache policy (bis Appendix B, and MediaPackage's live defaults, media.md §6): a non-blocking
playlist is cached for half a target duration; segments never change once published, so they
are cached for 14 days and marked immutable; a 404 is cached one target duration, so a player
asking for a segment just ahead of the edge retries soon. Playlists are gzip-compressed when the
client accepts it (Apple authoring 10.1). ``master.m3u8?region=R`` names region R in the
content steering server URI (when the master has one), so the steering server knows which
region's decision the player follows; the edges cache one copy per region.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from media.playlist import with_region
from media.steering import valid_region
from runtime.endpoints import Health, application

SEGMENT_CACHE = "public, max-age=1209600, immutable"
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def cache_control(name: str, target_duration: int) -> str | None:
    """Cache-Control for an object name, or None if the origin does not serve it."""
    if name.endswith(".ts"):
        return SEGMENT_CACHE
    if name.endswith(".m3u8"):
        return f"public, max-age={max(target_duration // 2, 1)}"
    return None


def build_app(origin: Path, target_duration: int, health: Health) -> web.Application:
    root = origin.resolve()

    async def hls(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (root / rel).resolve()
        policy = cache_control(rel, target_duration)
        if policy is None or not path.is_relative_to(root) or not path.is_file():
            return web.Response(status=404, text="not found\n",
                                headers={"Cache-Control": f"max-age={target_duration}"})
        headers = {"Cache-Control": policy, "Access-Control-Allow-Origin": "*"}
        if rel.endswith(".ts"):
            return web.FileResponse(path, headers={**headers, "Content-Type": "video/mp2t"})
        body = path.read_bytes()
        region = request.query.get("region")
        if region is not None and rel == "master.m3u8":
            if not valid_region(region):
                return web.Response(status=400, text="region: 1-32 of a-z 0-9 _ -\n",
                                    headers={"Cache-Control": f"max-age={target_duration}"})
            body = with_region(body.decode(), region).encode()
        resp = web.Response(body=body, headers=headers, content_type=CONTENT_TYPES[".m3u8"])
        resp.enable_compression()
        return resp

    app = application(health)
    app.router.add_get("/hls/{path:.+}", hls)
    return app
