"""``stumpcast ops serve | rules | dashboard | metrics``: the operations server and what
Prometheus and Grafana read (rules, dashboard JSON, the metric catalogue)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schemas.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.ops.server import OpsConfig
    from stumpcast.ops.service import run

    if args.config is not None:
        try:
            config = OpsConfig.load(args.config)
        except ValueError as exc:
            print(f"stumpcast ops serve: {exc}", file=sys.stderr)
            return 2
    else:
        config = OpsConfig(
            settings.ops_port,
            args.prometheus or f"http://127.0.0.1:{settings.stack_prometheus_port}",
            args.alertmanager or f"http://127.0.0.1:{settings.stack_alertmanager_port}",
            settings.run_dir.expanduser().resolve(), settings.ops_host)
    return run(config, settings)


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.ops.rules import Timing, render

    print(render(Timing.named(args.timing)), end="")
    return 0


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.ops.dashboards import render

    print(render(), end="")
    return 0


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.ops.catalog import markdown_table

    print(markdown_table())
    return 0


def register(sub: Any, bench: Any) -> None:
    ops = sub.add_parser("ops", help="the operations server, alert rules, dashboard, metrics",
                         description="The /ops page and exporter (started by `stack up "
                         "--observe`), and the files Prometheus and Grafana read.")
    cmds = ops.add_subparsers(dest="ops_command", metavar="ACTION")
    cmds.required = True
    p = cmds.add_parser("serve", help="serve /ops and /metrics on STUMPCAST_OPS_PORT",
                        description="Measure consumer lag, view staleness and viewers per CDN "
                        "from outside the services, serve them on /metrics, and serve the /ops "
                        "page, which charts Prometheus and lists Alertmanager's alerts.")
    p.add_argument("--config", type=Path, default=None,
                   help="ops.json written by `stack up --observe` (default: the settings)")
    p.add_argument("--prometheus", default=None, metavar="URL",
                   help="Prometheus to chart (default: the local stack's)")
    p.add_argument("--alertmanager", default=None, metavar="URL",
                   help="Alertmanager to list alerts from (default: the local stack's)")
    p.set_defaults(func=cmd_serve)
    p = cmds.add_parser("rules", help="print the Prometheus rules (compose/prometheus/rules.yml)")
    p.add_argument("--timing", choices=("standard", "fast"), default="standard",
                   help="fast: symptom thresholds and `for` windows divided by 12 (tests)")
    p.set_defaults(func=cmd_rules)
    p = cmds.add_parser("dashboard", help="print the Grafana dashboard JSON "
                        "(compose/grafana/stumpcast-overview.json)")
    p.set_defaults(func=cmd_dashboard)
    p = cmds.add_parser("metrics", help="print the metric catalogue (docs/operations.md)",
                        description="Every metric the services and the operations server "
                        "register: type, unit, labels and their bound, meaning.")
    p.add_argument("--markdown", action="store_true", help="(the only format)")
    p.set_defaults(func=cmd_metrics)
