"""A flush not yet carried out to the end, shared by both engines (confluent-kafka, faust).

``Aggregator.flush`` moves the windows on (closed windows are evicted, fresh sessions drained),
so a flush that failed half-way cannot be planned again: its plan is kept and its stages are
retried in order until each is done. Redis first (idempotent: finals are first-write-wins, live
partials and views are overwrites and set adds), then the window records on Kafka, then the
input offsets (a commit or acks), so the input is never released before its results are out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from analytics.aggregate import FlushPlan, Partial
from analytics.metrics import Metrics
from runtime.faults import Throttle, report
from schemas.heartbeats import ConcurrencyRecord


@dataclass
class PendingFlush:
    plan: FlushPlan
    now_ms: int
    generation: int                                  # the assignment it was planned under
    records: list[ConcurrencyRecord] | None = None   # None: Redis not written yet
    unsent: list[ConcurrencyRecord] = field(default_factory=list)

    def written(self, records: list[ConcurrencyRecord]) -> None:
        self.records, self.unsent = records, list(records)


class DependencyDown(Exception):
    """A stage of a flush could not finish because a server did not take its part."""


def report_skipped(skipped: list[tuple[Partial | None, Exception]], metrics: Metrics,
                   log: logging.Logger, throttle: Throttle) -> None:
    """What Redis refused in a flush (a script error: a bug), logged and counted; skipped."""
    for partial, exc in skipped:
        metrics.errors.labels("bug").inc()
        fields: dict[str, Any] = {}
        if partial is not None:
            fields = {"match_id": partial.match_id, "window_start_ms": partial.start_ms}
        report(log, "redis merge (skipped)", exc, throttle, **fields)


def final_windows(records: list[ConcurrencyRecord]) -> int:
    return sum(1 for r in records if r.region == "*" and r.cdn == "*")
