"""The streams worker's Prometheus metrics and its /metrics, /healthz, /readyz endpoints.

Metrics live in a registry created by ``Metrics()`` (never at import), so tests and several
apps in one process do not collide in the global registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_LATENCY_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("stumpcast_streams_events_in", "Events read, by type",
                                 ["type"], registry=r)
        self.events_out = Counter("stumpcast_streams_events_out",
                                  "Events committed to the view, by type", ["type"], registry=r)
        self.duplicates = Counter("stumpcast_streams_duplicates",
                                  "Events absorbed as duplicates", registry=r)
        self.rejects = Counter("stumpcast_streams_rejects", "Events sent to the DLQ, by reason",
                               ["reason"], registry=r)
        self.notifications = Counter("stumpcast_streams_notifications",
                                     "Notifications emitted, by kind", ["kind"], registry=r)
        self.fold_seconds = Histogram("stumpcast_streams_fold_seconds",
                                      "Fold + notification derivation time per event",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_seconds = Histogram("stumpcast_streams_commit_seconds",
                                        "Redis view commit (Lua) time per event",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("stumpcast_streams_consumer_lag",
                         "Messages behind the end of match.events, by partition",
                         ["partition"], registry=r)
        self.backlog = Gauge("stumpcast_streams_store_backlog",
                             "Events waiting for the event store (Cassandra)", registry=r)
        self.store_up = Gauge("stumpcast_streams_store_up",
                              "1 when the last event store write succeeded", registry=r)
        self.notes_published = Counter("stumpcast_streams_notifications_published",
                                       "Notifications committed to match.notifications by the "
                                       "transactional relay", registry=r)
        self.relay_commit_seconds = Histogram("stumpcast_streams_relay_commit_seconds",
                                              "Relay transaction time (begin to commit)",
                                              buckets=_LATENCY_BUCKETS, registry=r)
        self.held = Gauge("stumpcast_streams_held", "Events held behind a sequence gap",
                          registry=r)

    def published(self, count: int, seconds: float) -> None:
        """The relay committed ``count`` notifications in one transaction."""
        self.notes_published.inc(count)
        self.relay_commit_seconds.observe(seconds)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


async def serve(metrics: Metrics, port: int, ready: Callable[[], bool],
                host: str = "127.0.0.1") -> Any:
    """Start the HTTP endpoints on the running loop; returns the aiohttp runner to clean up."""
    from aiohttp import web

    async def metrics_view(_req: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(),
                            content_type="text/plain", charset="utf-8")

    async def healthz(_req: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_req: web.Request) -> web.Response:
        ok = ready()
        return web.Response(text="ready\n" if ok else "not ready\n", status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
