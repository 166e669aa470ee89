"""The streams worker's Prometheus metrics (served by ``runtime.endpoints``).

Metrics live in a registry created by ``Metrics()`` (never at import), so tests and several
apps in one process do not collide in the global registry.
"""

from __future__ import annotations

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
        self.dropped = Counter("stumpcast_streams_gap_dropped",
                               "Events let go (unacked, re-read later) behind a full gap",
                               registry=r)
        self.unavailable = Counter("stumpcast_streams_unavailable",
                                   "Steps retried because a dependency was down, by error",
                                   ["error"], registry=r)
        self.partitions = Gauge("stumpcast_streams_partitions",
                                "match.events partitions this worker holds", registry=r)

    def published(self, count: int, seconds: float) -> None:
        """The relay committed ``count`` notifications in one transaction."""
        self.notes_published.inc(count)
        self.relay_commit_seconds.observe(seconds)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
