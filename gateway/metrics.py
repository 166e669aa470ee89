"""Prometheus metrics of one gateway process, read from plain counters at scrape time.

The fanout loop increments plain ints (``Hub.stats``, ``FeedStats``); a collector turns them into
metric families only when ``/metrics`` is scraped, so a delivery costs no lock. Each process has
its own registry (nothing registered at import) and labels its series with ``worker``.

With several workers a scrape lands on whichever process the kernel picks (``SO_REUSEPORT``), so
each worker rewrites its counters to a file in a shared directory twice a second and every
worker's ``/metrics`` also reports its siblings' counters and gauges from there (files older than
``STALE_SECONDS`` belong to a dead worker and are skipped). Histograms stay per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STALE_SECONDS = 5.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    def __init__(self, worker: str, read: Callable[[], dict[str, Any]],
                 siblings: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.worker = worker
        self._read = read
        self._siblings = siblings or (lambda: [])
        self.registry.register(self)  # type: ignore[arg-type]
        self.latency = Histogram(
            "stumpcast_gateway_delivery_latency_seconds",
            "Commit to Redis until the update is written to every subscriber's socket.",
            ["worker"], buckets=LATENCY_BUCKETS, registry=self.registry).labels(worker)
        self.fanout = Histogram(
            "stumpcast_gateway_fanout_seconds",
            "Time to hand one Redis read to every subscriber.",
            ["worker"], buckets=LATENCY_BUCKETS, registry=self.registry).labels(worker)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rows = [(self.worker, self._read())]
        rows += [(str(v.get("worker", "?")), v) for v in self._siblings()
                 if str(v.get("worker")) != self.worker]
        gauges = {
            "connections": "Open WebSocket connections.",
            "subscriptions": "Channel subscriptions.",
            "queue_bytes": "Bytes waiting in per-client queues.",
            "backlogged_clients": "Clients with a non-empty queue.",
            "feed_lag_seconds": "How long the feed has been behind Redis.",
            "cached_matches": "Matches held in this process's cache.",
            "panic": "1 while the HTTP API serves the stored (stale) scorecards: the panic "
                     "flag file is set or Redis does not answer.",
            "level": "Degradation level in force (flags degrade.level/override): 1 sheds P2, "
                     "2 conflates score updates, 3 panic mode.",
            "loop_lag_ms": "Worst event-loop lag in the last second (ms): a controller signal.",
            "p2_offered": "P2 deliveries a second asked of this process, counted before "
                          "shedding: what the controller holds a level on.",
        }
        counters = {
            "messages_out": "Messages written to clients.",
            "bytes_out": "Bytes written to clients.",
            "writes": "Socket writes (several messages can share one).",
            "conflated": "Score messages replaced by a newer snapshot for slow clients.",
            "slow_closes": "Clients closed with the slow code.",
            "rejected": "Connections refused (origin, auth, accept rate).",
            "pong_timeouts": "Connections aborted: no pong within the ping timeout.",
            "redis_loads": "Views loaded from Redis.",
            "cache_answers": "Snapshots and resumes answered from memory.",
            "redis_answers": "Resumes that needed a Redis read.",
            "resets": "Gap or epoch change: subscribers reset to a snapshot.",
            "beats_sampled_out": "Heartbeats not forwarded while P2 is shed (sampled).",
            "p2_sent": "P2 deliveries handed to clients (not shed).",
        }
        for name, doc in gauges.items():
            g = GaugeMetricFamily(f"stumpcast_gateway_{name}", doc, labels=["worker"])
            for worker, values in rows:
                g.add_metric([worker], float(values.get(name, 0)))
            yield g
        for name, doc in counters.items():
            c = CounterMetricFamily(f"stumpcast_gateway_{name}", doc, labels=["worker"])
            for worker, values in rows:
                c.add_metric([worker], float(values.get(name, 0)))
            yield c

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


def read_siblings(stats_dir: Path, now: float) -> list[dict[str, Any]]:
    """Every worker's last counters in ``stats_dir`` (``worker-*.json``), fresh ones only."""
    import orjson

    out = []
    for path in stats_dir.glob("worker-*.json"):
        try:
            if now - path.stat().st_mtime > STALE_SECONDS:
                continue
            out.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue  # a worker is replacing its file, or it just went away
    return out
