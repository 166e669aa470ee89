"""The HTTP routes of the operations server (``server.OpsApp`` does the work).

Every error is JSON ``{"error": code, "message": text}``: 400 for a bad query parameter, 404
for an unknown panel or file, 502 when Prometheus or Alertmanager does not answer.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from runtime.endpoints import Health, Readiness, application
from stumpcast.ops.panels import BY_ID
from stumpcast.ops.server import (
    MAX_MINUTES,
    STATIC,
    TYPES,
    VENDOR,
    OpsApp,
    UpstreamError,
    panels_doc,
)


def _json(body: Any, status: int = 200) -> Any:
    from aiohttp import web

    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def _error(status: int, code: str, message: str) -> Any:
    return _json({"error": code, "message": message}, status)


def _minutes(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else 15.0
    except ValueError:
        raise ValueError(f"minutes={raw!r} is not a number") from None
    if not 1 <= value <= MAX_MINUTES:
        raise ValueError(f"minutes must be between 1 and {MAX_MINUTES}")
    return value


def _file(path: Any) -> Any:
    from aiohttp import web

    try:
        body = path.read_bytes()
    except OSError:
        if path in VENDOR.values():
            return _error(503, "uplot_missing", "uPlot is not installed: run `make setup` "
                          "(npm ci in stumpcast/ops/web)")
        return _error(404, "not_found", f"no file {path.name}")
    return web.Response(body=body, content_type=TYPES.get(path.suffix, "text/plain"),
                        headers={"Cache-Control": "no-cache"})


def add_routes(app: Any, ops: OpsApp) -> None:
    from aiohttp import web

    async def page(_request: web.Request) -> web.StreamResponse:
        return _file(STATIC / "index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = (STATIC / name).resolve()
        if not path.is_relative_to(STATIC) or path.suffix not in TYPES:
            return _error(404, "not_found", f"no file {name}")
        return _file(path)

    async def vendor(request: web.Request) -> web.StreamResponse:
        path = VENDOR.get(request.match_info["name"])
        return _file(path) if path else _error(404, "not_found", "no such vendor file")

    async def panels(_request: web.Request) -> web.StreamResponse:
        return _json(panels_doc())

    async def panel(request: web.Request) -> web.StreamResponse:
        panel_id = request.match_info["id"]
        if panel_id not in BY_ID:
            return _error(404, "unknown_panel", f"no panel {panel_id!r}; see /ops/api/panels")
        try:
            minutes = _minutes(request.query.get("minutes"))
        except ValueError as exc:
            return _error(400, "bad_minutes", str(exc))
        return await _upstream(ops.panel_data(panel_id, minutes, time.time()))

    async def alerts(_request: web.Request) -> web.StreamResponse:
        return await _upstream(ops.alerts())

    async def state(_request: web.Request) -> web.StreamResponse:
        return await _upstream(ops.state())

    async def notifications(_request: web.Request) -> web.StreamResponse:
        return _json(list(ops.notifications))

    async def notify(request: web.Request) -> web.StreamResponse:
        try:
            doc = orjson.loads(await request.read())
            count = ops.notified(doc if isinstance(doc, dict) else {})
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            return _error(400, "bad_notification", str(exc))
        return _json({"kept": count})

    app.router.add_get("/ops", page)
    app.router.add_get("/ops/", page)
    app.router.add_get("/ops/app/{name}", static)
    app.router.add_get("/ops/vendor/{name}", vendor)
    app.router.add_get("/ops/api/panels", panels)
    app.router.add_get("/ops/api/panel/{id}", panel)
    app.router.add_get("/ops/api/alerts", alerts)
    app.router.add_get("/ops/api/state", state)
    app.router.add_get("/ops/api/notifications", notifications)
    app.router.add_post("/ops/api/notify", notify)


async def _upstream(work: Any) -> Any:
    try:
        return _json(await work)
    except UpstreamError as exc:
        return _error(502, "upstream_unavailable", str(exc))


def build_app(ops: OpsApp) -> Any:
    from aiohttp import web

    registry = _registry(ops.exporter)
    health = Health.of_registry(registry, lambda: Readiness(
        bool(ops.exporter.ready), {"problems": [] if ops.exporter.ready else
                                   ["the exporter has not finished its first round"]}))
    app: web.Application = application(health)
    add_routes(app, ops)
    return app


def _registry(exporter: Any) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    return registry
