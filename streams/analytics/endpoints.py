"""/metrics, /healthz and /readyz in a daemon thread, for workers whose main loop is blocking
(the confluent-kafka analytics loop) or busy. Metrics live in a registry passed in, never the
global one, so tests and several workers in one process do not collide."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve_in_thread(registry: Any, port: int, ready: Callable[[], bool],
                    host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving; call ``.shutdown()`` on the result to stop."""
    from prometheus_client import generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/metrics":
                self._send(200, bytes(generate_latest(registry)))
            elif self.path == "/healthz":
                self._send(200, b"ok\n")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:  # no access log
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"endpoints:{port}", daemon=True).start()
    return server
