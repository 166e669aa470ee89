"""Every metric stumpcast exposes, read from the services' own registries.

``families()`` builds each service's metrics object exactly as the service does (no server, no
Kafka, no Redis) and the exporter's collector, and collects their families: name, type, labels,
help. The docs table (``markdown_table``, kept in docs/operations.md by a test), the rules and
dashboard checks (every name a query uses must exist here or be a recording rule), and the
label-bound check all read this one list, so a metric renamed in a service breaks the build
instead of an empty chart.

Label bounds: every label of every metric must be listed in ``LABEL_BOUNDS`` with what bounds
it; a new unbounded label (a match id, a session id) fails the test that reads this table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LABEL_BOUNDS: dict[str, str] = {
    "type": "event types of schemas.events (about 15), and `?` for an undecodable one",
    "reason": "dead-letter reasons of schemas.deadletter.Reason (7, streams); the first word "
              "of an ffmpeg launch's exit reason (a fixed set in media/worker.py)",
    "kind": "notification kinds of schemas.notifications (streams); the media worker's error "
            "kinds (a fixed set of literals in media/)",
    "partition": "partitions of match.events (8, schemas.topology)",
    "worker": "gateway processes on the port (`--workers`, one per core)",
    "outcome": "webhook job outcomes of the notifier (7)",
    "result": "`present`/`missing` (notifier gateway check); `fresh`/`stale` (view checks)",
    "rendition": "rungs of STUMPCAST_MEDIA_LADDER (at most 4)",
    "match": "at most 20 live matches (`stumpcast.ops.exporter.MAX_MATCHES`, stalest first)",
    "group": "the service consumer groups of schemas.topology (3)",
    "topic": "the watched topics (4: match.events, its DLQ, notifications, heartbeats)",
    "cdn": "at most 8 CDNs by viewers, the rest summed as `other`",
    "part": "the exporter's parts: events, views, kafka, cdn",
    "status": "HTTP status codes the service answers with (a fixed set: the ingest API's "
              "200/400/401/403/409/413/503..., the LL-HLS origin's 400 and 503)",
    "error": "the retriable error classes of streams.errors.Unavailable (3: ViewStoreError, "
             "EventStoreError, OutputError)",
}

SOURCES = ("streams", "gateway", "media", "analytics", "notifier", "ops")


@dataclass(frozen=True)
class Family:
    name: str          # as exposed: counters end in _total, histograms have _bucket etc.
    kind: str          # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str
    source: str        # which process serves it

    @property
    def series_names(self) -> tuple[str, ...]:
        if self.kind == "counter":
            return (self.name,)
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)

    @property
    def unit(self) -> str:
        base = self.name.removesuffix("_total")
        if base in UNITS:
            return UNITS[base]
        for part, unit in (("_seconds", "seconds"), ("bytes", "bytes")):
            if part in base:
                return unit
        return "count"


# Units the name does not say (Prometheus base units otherwise: seconds, bytes; "count" for
# a number of things, the things named by the metric).
UNITS: dict[str, str] = {
    "stumpcast_gateway_panic": "0 or 1",
    "stumpcast_streams_store_up": "0 or 1",
    "stumpcast_media_encode_speed": "x real time",
    "stumpcast_streams_consumer_lag": "messages",
    "stumpcast_kafka_consumer_lag": "messages",
    "stumpcast_kafka_topic_messages": "messages",
    "stumpcast_kafka_group_members": "consumers",
    "stumpcast_cdn_viewers": "sessions",
    "stumpcast_live_matches": "matches",
    "stumpcast_gateway_connections": "connections",
    "stumpcast_analytics_partitions": "partitions",
}


def _registries() -> Iterator[tuple[str, Any]]:
    from analytics.metrics import Metrics as AnalyticsMetrics
    from gateway.metrics import GatewayMetrics
    from media.metrics import MediaMetrics
    from notifier.metrics import NotifierMetrics
    from streams.metrics import Metrics as StreamsMetrics

    yield "streams", StreamsMetrics().registry
    yield "gateway", GatewayMetrics("0", lambda: {"panic": 0}).registry
    yield "media", MediaMetrics().registry
    yield "analytics", AnalyticsMetrics().registry
    yield "notifier", NotifierMetrics().registry


def _exporter_families() -> Iterator[Any]:
    from schemas.settings import Settings
    from stumpcast.ops.exporter import Exporter

    yield from Exporter(Settings.from_env({})).collect()


def families() -> list[Family]:
    out: list[Family] = []
    sources: list[tuple[str, Any, dict[str, tuple[str, ...]]]] = [
        (s, r.collect(), _declared(r)) for s, r in _registries()]
    sources.append(("ops", _exporter_families(), {}))
    for source, collected, declared in sources:
        for fam in collected:
            labels = _labels(fam, declared.get(fam.name, ()))
            name = f"{fam.name}_total" if fam.type == "counter" else fam.name
            out.append(Family(name, fam.type, labels, fam.documentation, source))
    return sorted(out, key=lambda f: f.name)


def _declared(registry: Any) -> dict[str, tuple[str, ...]]:
    """Family name -> label names of the registry's prometheus_client metrics. A labelled
    metric with no child yet has no sample to read them from. (``_collector_to_names`` and
    ``_labelnames`` are prometheus_client internals; a test fails if they go away.)"""
    out: dict[str, tuple[str, ...]] = {}
    for collector in getattr(registry, "_collector_to_names", {}):
        name, labels = getattr(collector, "_name", None), getattr(collector, "_labelnames", None)
        if name is not None and labels is not None:
            out[name] = tuple(labels)
    return out


def _labels(fam: Any, declared: tuple[str, ...]) -> tuple[str, ...]:
    """Label names of a family: its samples', its declaration's (custom collectors' families
    keep theirs in ``_labelnames``)."""
    names: set[str] = set(declared) | set(getattr(fam, "_labelnames", ()) or ())
    for sample in fam.samples:
        names |= set(sample.labels) - {"le"}
    return tuple(sorted(names))


def series_names() -> set[str]:
    """Every series name a query may use (histograms' _bucket, _sum and _count)."""
    return {n for f in families() for n in f.series_names}


def markdown_table() -> str:
    rows = ["| metric | type | unit | labels | served by | meaning |", "|---|---|---|---|---|---|"]
    for f in families():
        labels = ", ".join(f"`{label}`" for label in f.labels) or "—"
        rows.append(f"| `{f.name}` | {f.kind} | {f.unit} | {labels} | {f.source} | {f.help} |")
    return "\n".join(rows)
