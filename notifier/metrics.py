"""The notifier's Prometheus metrics, in a registry of their own (never the global one)."""

from __future__ import annotations


class NotifierMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.received = Counter("stumpcast_notifier_received",
                                "Notifications read from match.notifications", registry=r)
        self.outcomes = Counter("stumpcast_notifier_outcomes",
                                "Webhook jobs by outcome (delivered, dead_lettered, skip_*, "
                                "cancelled_while_held, expired_while_held)", ["outcome"],
                                registry=r)
        self.attempts = Counter("stumpcast_notifier_attempts", "HTTP attempts", registry=r)
        self.latency = Histogram("stumpcast_notifier_delivery_seconds",
                                 "From first attempt to a 2xx, retries included",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30,
                                          60, 120), registry=r)
        self.held = Gauge("stumpcast_notifier_held", "Notifications held for spoilers",
                          registry=r)
        self.in_work = Gauge("stumpcast_notifier_in_work", "Messages not yet finished",
                             registry=r)
        self.subscribers = Gauge("stumpcast_notifier_subscribers", "Registered webhooks",
                                 registry=r)
        self.errors = Counter("stumpcast_notifier_errors",
                              "Faults by kind: dependency (a server down: the job waits and is "
                              "retried) or bug (logged with its traceback, the job "
                              "dead-lettered as internal_error)", ["kind"], registry=r)
        self.gateway = Counter("stumpcast_notifier_gateway_check",
                               "Notifications found (present) or not (missing) in the gateway's "
                               "notifications stream a few seconds later", ["result"],
                               registry=r)
