"""``stumpcast chaos``: the chaos suite on the multi-node stack (``stumpcast.stack.chaos``).

Faults one at a time and then together during live replays with WebSocket clients through
HAProxy; after every fault the views are checked against the pure fold. Exit 0 when every
check passed, 1 when one failed (each failure is printed), 2 on bad arguments or a stack that
is not there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from schemas.settings import Settings


def register(sub: Any, bench: Any) -> None:
    from bench.chaos_core import FAULTS, TOGETHER, Plan

    names = ", ".join(f"{k} ({v})" for k, v in FAULTS.items())
    p = sub.add_parser(
        "chaos", help="faults during live matches on the multi-node stack, views checked",
        description="Replay matches live with WebSocket clients connected through HAProxy, "
        "inject faults one at a time and then together, and check after each one that every "
        "card (Redis, Cassandra at QUORUM, WebSocket clients) equals the pure fold, every "
        "notification is on Kafka exactly once, every client is at the final position and "
        "nothing went to the dead-letter topic. Needs `stumpcast stack up --nodes 3` and its "
        "settings (`source RUN_DIR/nodes3.env`); starts and stops the services itself. "
        f"Faults: {names}; {TOGETHER}: every SIGKILL and the worker SIGSTOP at once. "
        "Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.")
    d = Plan()
    p.add_argument("--clients", type=int, default=d.clients,
                   help=f"WebSocket load clients through HAProxy (default {d.clients})")
    p.add_argument("--matches", type=int, default=d.matches,
                   help=f"matches replayed live, at least 6 (default {d.matches})")
    p.add_argument("--faults", default="all",
                   help="comma-separated fault names and 'together', or 'all' (each alone, "
                   "then together; the default)")
    p.add_argument("--window", type=float, default=d.window,
                   help=f"seconds of play from a fault to its checkpoint (default {d.window:g})")
    p.add_argument("--settle", type=float, default=d.settle,
                   help=f"seconds a checkpoint waits for the views to settle (default "
                   f"{d.settle:g})")
    p.add_argument("--client-procs", type=int, default=d.client_procs,
                   help=f"load-client processes (default {d.client_procs})")
    p.add_argument("--speed", type=float, default=d.speed,
                   help="replay speed (default 0: the matches last the whole schedule)")
    p.add_argument("--no-record", action="store_true",
                   help="print the figures without appending them to BENCHMARKS.md")
    p.set_defaults(func=cmd_chaos)


def plan_of(args: argparse.Namespace) -> Any:
    """The plan of the arguments; PlanError says which one is wrong."""
    from bench.chaos_core import Plan, parse_faults

    return Plan(clients=args.clients, matches=args.matches,
                faults=tuple(parse_faults(args.faults)), window=args.window,
                settle=args.settle, client_procs=args.client_procs, speed=args.speed).check()


def cmd_chaos(args: argparse.Namespace, settings: Settings) -> int:
    from bench import log as benchlog
    from bench.chaos_core import ChaosError, PlanError
    from stumpcast.stack.chaos import NOTES, load_average, rows, run
    from stumpcast.stack.chaos_faults import check_capacity, check_stack
    from stumpcast.stack.errors import StackError

    try:
        plan = plan_of(args)
        check_stack(settings)
        check_capacity(plan.clients + plan.matches)
    except (PlanError, ChaosError) as exc:
        print(f"stumpcast chaos: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    load = load_average()
    try:
        figures = run(settings, plan, settings.run_dir / "chaos", print)
    except (ChaosError, StackError) as exc:   # the suite could not go on: nothing is left
        print(f"stumpcast chaos: {exc}", file=sys.stderr)
        return 1
    table = rows(figures, plan, f"{load} at the start, {load_average()} at the end",
                 time.monotonic() - started)
    for name, value in table:
        print(f"{name}: {value}")
    if not args.no_record:
        benchlog.record("chaos (stumpcast chaos)", table, NOTES, Path("BENCHMARKS.md"))
    failed = [p for f in figures for p in f.problems]
    if failed:
        print(f"stumpcast chaos: {len(failed)} checks failed (listed above)", file=sys.stderr)
        return 1
    return 0
