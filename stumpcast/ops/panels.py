"""The operations charts, defined once: the /ops page draws them and the Grafana dashboard
(``compose/grafana/stumpcast-overview.json``, ``dashboards.render``) has the same panels.

Each panel charts recording rules of ``stumpcast.ops.rules`` (the SLIs), so the page, the
dashboard and the alerts read the same definitions. ``legend`` names the label that tells the
series apart (``{match}``), or is a fixed name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str  # a fixed name, or "{label}" for one series per label value


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    unit: str          # "s", "messages", "1/s", "ratio", "x" (a multiple), "viewers", ...
    queries: tuple[Query, ...]
    help: str


PANELS: tuple[Panel, ...] = (
    Panel("latency", "Event to screen latency", "s", (
        Query("stumpcast:delivery_latency_seconds:p50_1m", "p50"),
        Query("stumpcast:delivery_latency_seconds:p99_1m", "p99"),
    ), "View commit to the update written on every subscriber's socket (gateway histogram)."),
    Panel("staleness", "View staleness per live match", "s", (
        Query("stumpcast:view_staleness_seconds:max", "{match}"),
    ), "Age of the oldest event a match's view has not taken; 0 is up to date."),
    Panel("lag", "Kafka consumer lag per group", "messages", (
        Query("stumpcast:kafka_consumer_lag:sum", "{group}"),
    ), "Messages after each service group's committed offsets, measured at the broker."),
    Panel("events", "Events in, dead letters out", "1/s", (
        Query("stumpcast:match_events:rate1m", "match.events"),
        Query("stumpcast:dead_letter_topic:rate1m", "match.events.dlq"),
        Query("stumpcast:dead_letters:rate1m", "dlq {reason}"),
    ), "Events written to match.events, and events the streams workers dead-lettered."),
    Panel("connections", "Gateway connections", "connections", (
        Query("stumpcast:gateway_connections:sum", "open"),
    ), "Open WebSocket connections over every gateway process."),
    Panel("saturation", "Gateway queue saturation", "ratio", (
        Query("stumpcast:gateway_queue_saturation:ratio", "backlogged / connected"),
        Query("stumpcast:gateway_slow_closes:rate1m", "slow closes /s"),
    ), "Share of clients with bytes waiting in their queue, and clients closed as slow."),
    Panel("budget", "Error budget burn rate (1 h)", "x", (
        Query("stumpcast:delivery_latency_errors:ratio_rate1h / 0.01", "delivery latency"),
        Query("stumpcast:view_freshness_errors:ratio_rate1h / 0.01", "view freshness"),
    ), "Error ratio over the SLO's allowance: 1 spends the budget exactly in 30 days, 14.4 "
       "pages."),
    Panel("cdn_viewers", "Concurrent viewers per CDN", "viewers", (
        Query("stumpcast:cdn_viewers:sum", "{cdn}"),
    ), "Distinct sessions with a heartbeat in the newest final window (analytics worker)."),
    Panel("rebuffering", "Rebuffering ratio per CDN", "ratio", (
        Query("stumpcast:cdn_rebuffering:ratio", "{cdn}"),
    ), "Buffering time over watch time in the newest final window."),
)

BY_ID = {p.id: p for p in PANELS}


def legend_of(template: str, labels: dict[str, str]) -> str:
    """``"dlq {reason}"`` with the series' labels filled in (an absent label: empty)."""
    out = template
    for key in [part.split("}", 1)[0] for part in template.split("{")[1:]]:
        out = out.replace("{" + key + "}", labels.get(key, ""))
    return out
