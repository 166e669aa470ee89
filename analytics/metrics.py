"""The analytics worker's Prometheus metrics, in a registry of their own (none at import).

Served by ``runtime.endpoints`` on ``STUMPCAST_ANALYTICS_METRICS_PORT``; both engines count the
same series.
"""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.beats = Counter("stumpcast_analytics_heartbeats", "Heartbeats folded", registry=r)
        self.rejects = Counter("stumpcast_analytics_rejects", "Invalid heartbeats dropped",
                               registry=r)
        self.late = Counter("stumpcast_analytics_late", "Heartbeats for closed windows",
                            registry=r)
        self.windows = Counter("stumpcast_analytics_windows", "Complete final windows published",
                               registry=r)
        self.flush_seconds = Histogram("stumpcast_analytics_flush_seconds",
                                       "Flush time (Redis + Kafka)", registry=r)
        self.behind = Gauge("stumpcast_analytics_event_time_behind_seconds",
                            "Wall time minus the newest heartbeat's ts at the last flush",
                            registry=r)
        self.errors = Counter("stumpcast_analytics_errors",
                              "Faults by kind: dependency (a server down: paused, retried) or "
                              "bug (logged with its traceback; the beat or partial skipped)",
                              ["kind"], registry=r)
        self.paused = Gauge("stumpcast_analytics_paused",
                            "1 while consumption is paused for a flush that waits for a "
                            "dependency", registry=r)
        self.partitions = Gauge("stumpcast_analytics_partitions", "Assigned partitions",
                                registry=r)
