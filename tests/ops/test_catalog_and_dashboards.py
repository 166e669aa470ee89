"""The metric catalogue (every metric the services register), its docs table, label bounds,
and the Grafana dashboard: every query names metrics that exist."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from stumpcast.ops import catalog, dashboards, panels, rules
from tests.ops.promql import BUILTIN, metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "compose" / "grafana" / "stumpcast-overview.json"
PROVISIONING = ROOT / "compose" / "grafana" / "provisioning"


def recorded() -> set[str]:
    return rules.names(rules.render_groups(rules.Timing()))[0]


def test_the_catalogue_reads_every_service() -> None:
    sources = {f.source for f in catalog.families()}
    assert sources == set(catalog.SOURCES)
    names = {f.name for f in catalog.families()}
    # one known metric of each, as the services name them
    for name in ("stumpcast_streams_rejects_total", "stumpcast_gateway_panic",
                 "stumpcast_gateway_delivery_latency_seconds", "stumpcast_media_encode_speed",
                 "stumpcast_analytics_heartbeats_total", "stumpcast_notifier_outcomes_total",
                 "stumpcast_view_staleness_seconds", "stumpcast_kafka_consumer_lag"):
        assert name in names, name
    rejects = next(f for f in catalog.families() if f.name == "stumpcast_streams_rejects_total")
    assert rejects.labels == ("reason",)  # read from the declaration: no sample yet


def test_every_label_has_a_documented_bound() -> None:
    labels = {label for f in catalog.families() for label in f.labels}
    assert labels - set(catalog.LABEL_BOUNDS) == set()
    assert "session" not in labels and "session_id" not in labels


def test_operations_md_lists_every_metric() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert catalog.markdown_table() in text, (
        "docs/operations.md's metrics table is stale: stumpcast ops metrics --markdown")


def test_the_checked_in_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD.read_text() == dashboards.render(), (
        "stale: stumpcast ops dashboard > compose/grafana/stumpcast-overview.json")


def test_every_dashboard_query_names_metrics_that_exist() -> None:
    doc = json.loads(DASHBOARD.read_text())
    known = catalog.series_names() | recorded() | BUILTIN
    exprs = dashboards.queries(doc)
    assert len(exprs) >= len(panels.PANELS)
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, (expr, names - known)


def test_the_dashboard_has_the_pages_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    charts = [p for p in doc["panels"] if p["type"] == "timeseries"]
    assert [p["title"] for p in charts] == [p.title for p in panels.PANELS]
    for chart, panel in zip(charts, panels.PANELS, strict=True):
        assert [t["expr"] for t in chart["targets"]] == [q.expr for q in panel.queries]
    kinds = {p["type"] for p in doc["panels"]}
    assert {"stat", "alertlist"} <= kinds  # panic state and alerts, as on /ops
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["uid"] == dashboards.DATASOURCE_UID
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "stumpcast.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_legends() -> None:
    assert panels.legend_of("dlq {reason}", {"reason": "conflict"}) == "dlq conflict"
    assert panels.legend_of("{match}", {}) == ""
    assert dashboards.grafana_legend("dlq {reason}") == "dlq {{reason}}"
