"""``stumpcast plan``: the fleet to prescale before a match (``stumpcast.plan``)."""

from __future__ import annotations

import argparse
from typing import Any

from schemas.settings import Settings


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stumpcast.plan import plan_text

    print(plan_text(args.viewers, args.matches, Path(args.benchmarks), headroom=args.headroom,
                    interval_s=settings.heartbeat_interval))
    return 0


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("plan", help="the fleet to prescale before a match",
                       description="Gateway processes, Kafka partitions, Redis shards, stream "
                       "and analytics workers, notifier and bandwidth for an expected audience, "
                       "from the figures in BENCHMARKS.md, with industry headroom (3x peak) and "
                       "a capacity ladder.")
    p.add_argument("--viewers", type=int, required=True, help="expected peak concurrent viewers")
    p.add_argument("--matches", type=int, default=1, help="matches live at the same time")
    p.add_argument("--headroom", type=float, default=3.0, help="multiple of peak (default 3)")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="where the figures are")
    p.set_defaults(func=cmd_plan)
