"""Config files of Prometheus and Alertmanager in the local stack, rendered as text (pure).

Prometheus finds what to scrape in the run folder (``runtime.discovery``: one ``file_sd`` file
per running service), evaluates ``stumpcast.ops.rules`` and sends alerts to the local
Alertmanager, which groups them and posts each notification (firing and resolved) to the
operations server, whose /ops page lists the recent ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _duration(seconds: float) -> str:
    """Whole milliseconds as a Prometheus duration (``5s``, ``1500ms``)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def prometheus_yml(*, port: int, alertmanager_port: int, targets_dir: Path, rules: Path,
                   interval: float) -> str:
    every = _duration(interval)
    doc: dict[str, Any] = {
        "global": {"scrape_interval": every, "evaluation_interval": every,
                   # a scrape must end before the next one starts
                   "scrape_timeout": _duration(min(interval, 4.0))},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            # job and the pid (a __meta_ label, dropped after relabelling) come from the files
            {"job_name": "stumpcast",
             "file_sd_configs": [{"files": [str(targets_dir / "*.json")],
                                  "refresh_interval": every}]},
            {"job_name": "prometheus",
             "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {"job_name": "alertmanager",
             "static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]},
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_yml(*, ops_port: int, fast: bool) -> str:
    """One route to the operations server's webhook, resolved alerts included.

    Grouping by alert and by the label that says where (match, group, job): one notification
    per stale match, not one per evaluation. ``fast`` (stack tests) shortens the waits.
    """
    doc = {
        "route": {
            "receiver": "ops",
            "group_by": ["alertname", "severity", "match", "group", "job"],
            "group_wait": "1s" if fast else "10s",
            "group_interval": "5s" if fast else "1m",
            "repeat_interval": "4h",
        },
        "receivers": [{"name": "ops", "webhook_configs": [
            {"url": f"http://127.0.0.1:{ops_port}/ops/api/notify", "send_resolved": True}]}],
    }
    return yaml.safe_dump(doc, sort_keys=False)
