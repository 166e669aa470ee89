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
from typing import TYPE_CHECKING

from aiohttp import web

from media.playlist import with_region
from media.steering import valid_region
from runtime.endpoints import Health, application

if TYPE_CHECKING:
    from media.ll_origin import LiveOrigin

SEGMENT_CACHE = "public, max-age=1209600, immutable"
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t",
                 ".m4s": "video/iso.segment", ".mp4": "video/mp4"}
MEDIA_SUFFIXES = (".ts", ".m4s", ".mp4")


def cache_control(name: str, target_duration: int) -> str | None:
    """Cache-Control for an object name, or None if the origin does not serve it.

    LL-HLS init sections, parts and segments (``.mp4``, ``.m4s``) never change either: their
    names carry the launch (``media.llhls``)."""
    if name.endswith(MEDIA_SUFFIXES):
        return SEGMENT_CACHE
    if name.endswith(".m3u8"):
        return f"public, max-age={max(target_duration // 2, 1)}"
    return None


def build_app(origin: Path, target_duration: int, health: Health,
              live: LiveOrigin | None = None) -> web.Application:
    """``live``: the LL-HLS origin (media playlists from memory, blocking reload)."""
    root = origin.resolve()

    async def hls(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (root / rel).resolve()
        policy = cache_control(rel, target_duration)
        if live is not None and policy is not None and path.is_relative_to(root):
            if rel.endswith("/index.m3u8") and rel.count("/") == 1:
                return await live.playlist(request, rel.split("/")[0])
            held = await live.hold_part(rel) if rel.endswith(".m4s") else None
            if held is not None:
                return held
        if policy is None or not path.is_relative_to(root) or not path.is_file():
            return web.Response(status=404, text="not found\n",
                                headers={"Cache-Control": f"max-age={target_duration}"})
        headers = {"Cache-Control": policy, "Access-Control-Allow-Origin": "*"}
        if rel.endswith(MEDIA_SUFFIXES):
            kind = CONTENT_TYPES[path.suffix]
            return web.FileResponse(path, headers={**headers, "Content-Type": kind})
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
