"""The Grafana dashboard: the /ops page's panels (``panels.PANELS``) as Grafana JSON.

``render()`` is ``compose/grafana/stumpcast-overview.json`` (a test keeps the two in step and
checks that every metric its queries name is registered by a service or is a recording rule).
Compose provisions it with the Prometheus data source whose uid is ``DATASOURCE_UID``
(``compose/grafana/provisioning``). Besides the charts, like the page: a stat of the panic
state and the list of firing alerts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stumpcast.ops.panels import PANELS, Panel

DATASOURCE_UID = "stumpcast-prometheus"
UID = "stumpcast-overview"
# Grafana unit ids (grafana/packages/grafana-data valueFormats): seconds, plain numbers,
# per second, 0-1 ratios shown as percent, a plain multiple.
GRAFANA_UNITS = {"s": "s", "messages": "short", "1/s": "reqps", "ratio": "percentunit",
                 "x": "none", "viewers": "short", "connections": "short"}
WIDTH, HEIGHT = 12, 8
PANIC_EXPR = "max(stumpcast_gateway_panic)"


def _datasource() -> dict[str, str]:
    return {"type": "prometheus", "uid": DATASOURCE_UID}


def grafana_legend(template: str) -> str:
    """``{match}`` (the page's legend) as Grafana's ``{{match}}``."""
    return re.sub(r"\{(\w+)\}", r"{{\1}}", template)


def timeseries(panel: Panel, index: int, y: int) -> dict[str, Any]:
    return {
        "id": index + 1, "type": "timeseries", "title": panel.title,
        "description": panel.help, "datasource": _datasource(),
        "gridPos": {"x": (index % 2) * WIDTH, "y": y, "w": WIDTH, "h": HEIGHT},
        "fieldConfig": {"defaults": {"unit": GRAFANA_UNITS[panel.unit]}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": _datasource(),
                     "expr": q.expr, "legendFormat": grafana_legend(q.legend)}
                    for i, q in enumerate(panel.queries)],
    }


def dashboard() -> dict[str, Any]:
    head = [
        {"id": 100, "type": "stat", "title": "Panic mode (gateway serves stored scorecards)",
         "datasource": _datasource(), "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4},
         "targets": [{"refId": "A", "datasource": _datasource(), "expr": PANIC_EXPR}],
         "fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {
             "0": {"text": "off", "color": "green"}, "1": {"text": "PANIC", "color": "red"}}}]},
             "overrides": []}},
        {"id": 101, "type": "alertlist", "title": "Alerts firing",
         "gridPos": {"x": 6, "y": 0, "w": 18, "h": 4},
         "options": {"alertInstanceLabelFilter": "", "stateFilter": {"firing": True,
                                                                     "pending": True}}},
    ]
    charts = [timeseries(p, i, 4 + (i // 2) * HEIGHT) for i, p in enumerate(PANELS)]
    return {
        "uid": UID, "title": "stumpcast: live match health", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "10s", "tags": ["stumpcast"],
        "time": {"from": "now-1h", "to": "now"}, "timezone": "browser",
        "panels": head + charts,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def queries(doc: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard document."""
    return [t["expr"] for p in doc.get("panels", []) for t in p.get("targets", []) if "expr" in t]
