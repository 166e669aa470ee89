"""Static files of the live match page, served on the gateway's port.

``/`` is the page, ``/app/...`` its CSS and ES modules, ``/vendor/hls.mjs`` the hls.js ES module
from ``node_modules`` (installed by ``make setup``: ``npm ci`` in this folder; never committed).
WebSocket upgrades are never answered here, whatever their path. There is no build step: what
is on disk is what the browser runs (read per request; the files are small).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.http import HttpResponse, json_error

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
HLS_JS = HERE / "node_modules" / "hls.js" / "dist" / "hls.mjs"
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json"}
# The page and its modules change with the code; a short max-age keeps a reload honest.
CACHE = "public, max-age=5"
PREFIXES = ("/app/", "/vendor/")

def is_static(path: str, headers: Mapping[str, str]) -> bool:
    if headers.get("Upgrade", "").lower() == "websocket":
        return False
    route = path.split("?", 1)[0]
    return route in ("/", "/index.html", "/favicon.ico") or route.startswith(PREFIXES)


def resolve(route: str) -> Path | None:
    """The file for a route, or None when the route names nothing we serve."""
    if route in ("/", "/index.html"):
        return STATIC / "index.html"
    if route == "/vendor/hls.mjs":
        return HLS_JS
    if route.startswith("/app/"):
        path = (STATIC / route[len("/app/"):]).resolve()
        if path.is_relative_to(STATIC) and path.suffix in TYPES:
            return path
    return None


def serve(path: str) -> HttpResponse:
    route = path.split("?", 1)[0]
    file = resolve(route)
    if file is None:
        return json_error(404, "not_found", f"no file {route}")
    try:
        body = file.read_bytes()
    except OSError:
        if file == HLS_JS:
            return json_error(503, "hls_js_missing", "hls.js is not installed: run "
                              "`make setup` (npm ci in gateway/web)")
        return json_error(404, "not_found", f"no file {route}")
    return HttpResponse(200, body, (("Cache-Control", CACHE),),
                        content_type=TYPES.get(file.suffix, "application/octet-stream"))
