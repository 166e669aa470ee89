"""Prometheus recording and alerting rules, written as data and rendered to YAML.

Three groups of rules:

* **SLIs** (``stumpcast:...`` recording rules, named ``level:metric:operations``): delivery
  latency, view staleness, consumer lag per group, dead letters, gateway connections and queue
  saturation, viewers and rebuffering per CDN. The /ops page and the Grafana dashboard chart
  these (``stumpcast.ops.panels``).
* **SLOs** with multi-window, multi-burn-rate alerts (Google SRE Workbook, "Alerting on SLOs";
  ../shared/reference/edge.md §4.1): an alert fires when the error ratio over both a long and a
  short window exceeds burn rate x (1 - objective); the short window lets it resolve quickly.
* **Symptoms**: a live match whose view is behind its events for two minutes, a streams group
  with no members, dead letters from valid sources, the gateway in panic mode, a service whose
  scrape fails.

``render(Timing())`` is the checked-in ``compose/prometheus/rules.yml`` (a test keeps the two in
step; ``promtool test rules compose/prometheus/tests.yml`` tests every rule). The local stack
renders the same rules with ``STUMPCAST_STACK_OBSERVE_TIMING``: ``fast`` divides the symptom
thresholds and every ``for`` by 12, so a stack test sees an alert fire and resolve in a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# (long window, short window, burn rate, severity): the workbook's table (edge.md §4.1).
BURN_ALERTS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("3d", "6h", 1.0, "ticket"),
)
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "6h", "3d")
FAST_DIVISOR = 12


@dataclass(frozen=True)
class Timing:
    """How long things wait: ``divisor`` 1 in production, ``FAST_DIVISOR`` in stack tests."""

    divisor: int = 1

    @classmethod
    def named(cls, name: str) -> Timing:
        if name not in ("standard", "fast"):
            raise ValueError(f"unknown timing {name!r}: standard or fast")
        return cls(FAST_DIVISOR if name == "fast" else 1)

    def seconds(self, value: float) -> float:
        return value / self.divisor

    def duration(self, seconds: float) -> str:
        """A Prometheus duration: whole minutes as ``2m``, otherwise whole seconds."""
        s = max(1, round(seconds / self.divisor))
        return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


@dataclass(frozen=True)
class Slo:
    name: str          # the recording rules' metric part and the alerts' slo label
    alert: str
    objective: float   # e.g. 0.99: 99% of events are good
    errors: str        # PromQL of the error ratio over a window, ``{w}`` its range
    summary: str


SLOS: tuple[Slo, ...] = (
    Slo("delivery_latency", "DeliveryLatencyBudgetBurn", 0.99,
        "1 - sum(rate(stumpcast_gateway_delivery_latency_seconds_bucket{{le=\"0.5\"}}[{w}]))"
        " / (sum(rate(stumpcast_gateway_delivery_latency_seconds_count[{w}])) > 0)",
        "more than 1% of updates take over 0.5 s from the view commit to the viewers' sockets"),
    Slo("view_freshness", "ViewFreshnessBudgetBurn", 0.99,
        "sum(rate(stumpcast_view_freshness_checks_total{{result=\"stale\"}}[{w}]))"
        " / (sum(rate(stumpcast_view_freshness_checks_total[{w}])) > 0)",
        "live-match views are more than 10 s behind their events over 1% of the time"),
)


def sli_rules() -> list[dict[str, Any]]:
    """What the /ops page and the dashboard chart; ``[1m]`` rates so a demo shows data soon."""
    return [
        _record("stumpcast:delivery_latency_seconds:p50_1m", _quantile(0.5)),
        _record("stumpcast:delivery_latency_seconds:p99_1m", _quantile(0.99)),
        _record("stumpcast:view_staleness_seconds:max",
                "max by (match) (stumpcast_view_staleness_seconds)"),
        _record("stumpcast:kafka_consumer_lag:sum",
                "sum by (group) (stumpcast_kafka_consumer_lag)"),
        _record("stumpcast:match_events:rate1m",
                "sum(rate(stumpcast_kafka_topic_messages_total{topic=\"match.events\"}[1m]))"),
        _record("stumpcast:dead_letters:rate1m",
                "sum by (reason) (rate(stumpcast_streams_rejects_total[1m]))"),
        _record("stumpcast:dead_letter_topic:rate1m",
                "sum(rate(stumpcast_kafka_topic_messages_total{topic=\"match.events.dlq\"}[1m]))"),
        _record("stumpcast:gateway_connections:sum", "sum(stumpcast_gateway_connections)"),
        _record("stumpcast:gateway_queue_saturation:ratio",
                "sum(stumpcast_gateway_backlogged_clients)"
                " / clamp_min(sum(stumpcast_gateway_connections), 1)"),
        _record("stumpcast:gateway_slow_closes:rate1m",
                "sum(rate(stumpcast_gateway_slow_closes_total[1m]))"),
        _record("stumpcast:cdn_viewers:sum", "sum by (cdn) (stumpcast_cdn_viewers)"),
        _record("stumpcast:cdn_rebuffering:ratio",
                "sum by (cdn) (stumpcast_cdn_buffering_seconds)"
                " / (sum by (cdn) (stumpcast_cdn_watch_seconds) > 0)"),
    ]


def _quantile(q: float) -> str:
    return (f"histogram_quantile({q}, sum by (le) "
            "(rate(stumpcast_gateway_delivery_latency_seconds_bucket[1m])))")


def _record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def slo_group(slo: Slo, timing: Timing) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        _record(f"stumpcast:{slo.name}_errors:ratio_rate{w}", slo.errors.format(w=w))
        for w in WINDOWS]
    budget = round(1 - slo.objective, 6)
    for severity in ("page", "ticket"):
        pairs = [(lw, sw, rate) for lw, sw, rate, sev in BURN_ALERTS if sev == severity]
        expr = "\nor\n".join(
            f"(stumpcast:{slo.name}_errors:ratio_rate{lw} > ({rate:g} * {budget:g})\n"
            f" and stumpcast:{slo.name}_errors:ratio_rate{sw} > ({rate:g} * {budget:g}))"
            for lw, sw, rate in pairs)
        rules.append({
            "alert": slo.alert, "expr": expr,
            "for": timing.duration(120 if severity == "page" else 900),
            "labels": {"severity": severity, "slo": slo.name},
            "annotations": {"summary": f"{slo.name} SLO ({slo.objective:.0%}): error budget "
                                       f"burning ({severity})",
                            "description": slo.summary},
        })
    return {"name": f"stumpcast-slo-{slo.name}", "rules": rules}


def symptom_rules(timing: Timing) -> list[dict[str, Any]]:
    stale = timing.seconds(120)
    return [
        {"alert": "ViewStale",
         "expr": f"max by (match) (stumpcast_view_staleness_seconds) > {stale:g}",
         "for": timing.duration(60),
         "labels": {"severity": "page"},
         "annotations": {"summary": "match {{ $labels.match }}: the view is "
                                    "{{ printf \"%.0f\" $value }} s behind events that have "
                                    "arrived",
                         "description": f"A live match's view has not taken an event that "
                                        f"arrived over {stale:g} s ago (streams workers down, "
                                        "stuck, or Redis refusing writes)."}},
        {"alert": "StreamsGroupEmpty",
         "expr": "stumpcast_kafka_group_members{group=\"stumpcast-streams\"} == 0"
                 " and on() stumpcast_live_matches > 0",
         "for": timing.duration(60),
         "labels": {"severity": "page"},
         "annotations": {"summary": "no streams worker is in the stumpcast-streams group",
                         "description": "Nobody folds match events into views while a match "
                                        "is live."}},
        {"alert": "DeadLettersFromValidSources",
         "expr": "sum(rate(stumpcast_streams_rejects_total"
                 "{reason!=\"unauthorised_source\"}[5m])) > 0",
         "for": timing.duration(60),
         "labels": {"severity": "ticket"},
         "annotations": {"summary": "events from allowed sources go to match.events.dlq",
                         "description": "Gaps, conflicts or invalid events from scorers and "
                                        "feeds we accept: see `stumpcast tail "
                                        "match.events.dlq`."}},
        {"alert": "GatewayPanicMode",
         "expr": "max(stumpcast_gateway_panic) == 1",
         "for": timing.duration(30),
         "labels": {"severity": "page"},
         "annotations": {"summary": "the gateway serves stored (stale) scorecards",
                         "description": "The panic flag is set or Redis does not answer."}},
        {"alert": "ServiceDown",
         "expr": "up{job=~\"streams|gateway|media|analytics|notifier|ops\"} == 0",
         "for": timing.duration(60),
         "labels": {"severity": "ticket"},
         "annotations": {"summary": "{{ $labels.job }} at {{ $labels.instance }} does not "
                                    "answer /metrics",
                         "description": "Its target file is in the run folder but the scrape "
                                        "fails."}},
    ]


def render_groups(timing: Timing) -> dict[str, Any]:
    return {"groups": [
        {"name": "stumpcast-sli", "rules": sli_rules()},
        *(slo_group(slo, timing) for slo in SLOS),
        {"name": "stumpcast-symptoms", "rules": symptom_rules(timing)},
    ]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = ("# Generated by `stumpcast ops rules` from stumpcast/ops/rules.py; do not edit by hand.\n"
          "# Unit tests: promtool test rules compose/prometheus/tests.yml\n")


def render(timing: Timing | None = None) -> str:
    body = yaml.dump(render_groups(timing or Timing()), Dumper=_Dumper, sort_keys=False,
                     width=1000, allow_unicode=True)
    return HEADER + body


def names(groups: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(recording rule names, alert names) of rendered groups."""
    records = {r["record"] for g in groups["groups"] for r in g["rules"] if "record" in r}
    alerts = {r["alert"] for g in groups["groups"] for r in g["rules"] if "alert" in r}
    return records, alerts
