"""``/metrics``, ``/healthz`` and ``/readyz``: what every service answers, in one place.

``Health`` says what a service reports: its Prometheus text, whether it is ready (and why not),
and optionally what it is doing. ``Health.answer(path)`` is the whole protocol, without I/O:

* ``/metrics``: 200, Prometheus text format 0.0.4;
* ``/healthz``: 200 while the process answers, ``{"status": "ok", ...status}``;
* ``/readyz``: 200 or 503, ``{"ready": bool, ...status, ...detail}``.

Three ways to serve it, one per kind of service loop:

* ``serve_in_thread``: a daemon thread, for workers whose main loop is blocking (the
  confluent-kafka analytics loop) or another thread's (the notifier);
* ``application`` + ``serve``: an aiohttp app on the running loop (the streams worker; the
  media worker adds its HLS routes to the same app);
* the gateway answers on its WebSocket port, through ``answer`` in its HTTP API.

Metrics live in a registry the service passes in, never the global one, so tests and several
services in one process do not collide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from aiohttp import web

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"
PATHS = ("/metrics", "/healthz", "/readyz")


@dataclass(frozen=True, slots=True)
class Readiness:
    """Ready or not, with what a reader needs to see why (e.g. ``{"problems": [...]}``)."""

    ready: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Health:
    """A service's answers. ``metrics`` renders the Prometheus text; ``ready`` returns a bool
    or a ``Readiness``; ``status`` (optional) adds fields to both JSON documents."""

    metrics: Callable[[], bytes]
    ready: Callable[[], bool | Readiness]
    status: Callable[[], Mapping[str, Any]] | None = None

    @classmethod
    def of_registry(cls, registry: Any, ready: Callable[[], bool | Readiness],
                    status: Callable[[], Mapping[str, Any]] | None = None) -> Health:
        """Metrics from a ``prometheus_client`` registry."""

        def render() -> bytes:
            from prometheus_client import generate_latest

            return bytes(generate_latest(registry))

        return cls(render, ready, status)

    def answer(self, path: str) -> Reply | None:
        """The reply to a GET of ``path`` (query string ignored), None if not one of ours."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/metrics":
            return Reply(200, self.metrics(), PROMETHEUS)
        if route == "/healthz":
            return Reply(200, orjson.dumps({"status": "ok", **self._status()}), JSON)
        if route == "/readyz":
            state = self.ready()
            if not isinstance(state, Readiness):
                state = Readiness(bool(state))
            body = {"ready": state.ready, **self._status(), **state.detail}
            return Reply(200 if state.ready else 503, orjson.dumps(body), JSON)
        return None

    def _status(self) -> Mapping[str, Any]:
        return self.status() if self.status is not None else {}


def serve_in_thread(health: Health, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve in a daemon thread; call ``.shutdown()`` on the result to stop. Port 0: any free
    port (``server_address[1]`` says which)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            reply = health.answer(self.path) or Reply(404, b"not found\n", "text/plain")
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *_args: Any) -> None:  # no access log
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"endpoints:{port}", daemon=True).start()
    return server


def application(health: Health) -> web.Application:
    """An aiohttp application answering the three paths; add a service's own routes to it."""
    from aiohttp import web

    async def view(request: web.Request) -> web.Response:
        reply = health.answer(request.path)
        assert reply is not None  # routed for PATHS only
        return web.Response(body=reply.body, status=reply.status,
                            headers={"Content-Type": reply.content_type})

    app = web.Application()
    for path in PATHS:
        app.router.add_get(path, view)
    return app


async def serve(app: web.Application, port: int, host: str = "127.0.0.1",
                reuse_port: bool = False) -> web.AppRunner:
    """Serve ``app`` on the running loop; ``await runner.cleanup()`` on the result to stop.
    ``reuse_port``: several processes share the port (the gateway's workers)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    return runner
