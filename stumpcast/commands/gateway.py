"""`stumpcast gateway serve`, `stumpcast watch` and `stumpcast bench gateway`.

Thin shells: the gateway itself is ``gateway.server``; the terminal viewer is ``gateway.terminal``
over the client library; the benchmark is ``bench.gateway``. Heavy imports happen inside the
handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import log as benchlog
from schemas.settings import Settings

BENCH_MATCH = "1370353.json"  # the 2023 IPL final, in STUMPCAST_CRICSHEET_DIR


def register(sub: Any, bench: Any) -> None:
    g = sub.add_parser("gateway", help="the WebSocket/HTTP gateway",
                       description="The WebSocket fanout and HTTP API gateway.")
    gsub = g.add_subparsers(dest="gateway_command", metavar="COMMAND")
    gsub.required = True
    s = gsub.add_parser("serve", help="serve WebSockets and HTTP on one port",
                        description="Serve live scorecards and notifications over WebSockets "
                        "and the HTTP API on STUMPCAST_GATEWAY_HOST:PORT. With --workers N, N "
                        "processes share the port (SO_REUSEPORT).")
    s.add_argument("--workers", type=int, default=None,
                   help="processes sharing the port (default: STUMPCAST_GATEWAY_WORKERS)")
    s.add_argument("--port", type=int, default=None, help="override STUMPCAST_GATEWAY_PORT")
    s.add_argument("--worker-id", default=None, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("watch", help="show a live scorecard in the terminal",
                       description="Connect to the gateway, subscribe to a match's scorecard "
                       "and notifications, and show them live, redrawn in place on a terminal "
                       "(each new card as a plain block of text when the output is not a "
                       "terminal); reconnects and resumes, and waits for a match the gateway "
                       "does not have yet.")
    w.add_argument("match_id", metavar="MATCH_ID")
    w.add_argument("--url", default=None, help="gateway URL (default: ws://HOST:PORT/ws)")
    w.add_argument("--token", default=None, help="connection token (JWT)")
    w.add_argument("--progress", action="store_true",
                   help="plain lines instead: one per innings, wicket, fifty, over, innings "
                   "end and result (what `stumpcast demo` shows off a terminal)")
    w.set_defaults(func=cmd_watch)

    b = bench.add_parser("gateway", help="fanout: latency, throughput, memory, reconnect storm",
                         description="Start the gateway (and its floor "
                         "baselines) in N worker processes, open many client connections from "
                         "separate processes, drive updates into Redis, and report delivery "
                         "latency, deliveries/s, CPU, RSS per connection and a reconnect storm. "
                         "With --scenarios, issue #21's scenarios instead (idle, spread, "
                         "lockstep) against the gateway in each --workers count and its floor, "
                         "and with --peer against Centrifugo in the same run, with ratios.")
    b.add_argument("--connections", type=_count, default=None, help="client connections "
                   "(default 20,000; with --scenarios: 19,800 for idle and spread, 10,000 for "
                   "lockstep)")
    b.add_argument("--matches", type=_count, default=10, help="matches the clients spread over")
    b.add_argument("--workers", type=_worker_counts, default=None,
                   help="gateway processes (default 2); with --scenarios a comma-separated "
                   "list, each run in turn (default 1,2)")
    b.add_argument("--client-procs", type=_count, default=4, help="load-generator processes")
    b.add_argument("--updates", type=int, default=60, help="updates per match per latency window")
    b.add_argument("--windows", type=int, default=3,
                   help="latency windows, measured one after another (median p99 reported)")
    b.add_argument("--match-file", type=Path, default=None,
                   help="Cricsheet match whose scorecards drive the updates (default: "
                   f"{BENCH_MATCH} in STUMPCAST_CRICSHEET_DIR)")
    b.add_argument("--port", type=int, default=18180, help="port for the benchmark gateway")
    b.add_argument("--skip", default="", help="phases to skip, comma separated "
                   "(hot,throughput,storm,baseline)")
    b.add_argument("--scenarios", type=_scenarios, default=None,
                   help="instead of the phases above, issue #21's scenarios, comma separated: "
                   "idle (RSS per idle subscribed connection), spread (latency, 2 updates/s on "
                   "each of --matches channels), lockstep (server CPU per delivery on one "
                   "channel, and the floor's)")
    b.add_argument("--peer", choices=["centrifugo"], default=None,
                   help="with --scenarios: also run them against this server in the same run "
                   "and report the ratios (Centrifugo v6.9.1, built from the Go module proxy)")
    b.add_argument("--compete", action=argparse.BooleanOptionalAction, default=None,
                   help="load clients at normal priority, competing for the cores like a real "
                   "process (default with --scenarios), or under SCHED_BATCH (default without)")
    b.add_argument("--duration", type=_seconds, default=30.0,
                   help="with --scenarios: seconds spread measures (default 30)")
    b.add_argument("--lockstep-updates", type=_count, default=20,
                   help="with --scenarios: updates lockstep measures (default 20)")
    benchlog.add_no_record(b)
    b.set_defaults(func=cmd_bench)


def _count(raw: str) -> int:
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw}: at least 1")
    return value


def _worker_counts(raw: str) -> list[int]:
    counts = [_count(x) for x in raw.split(",")]
    if len(set(counts)) != len(counts) or max(counts) > 16:
        raise argparse.ArgumentTypeError(f"{raw}: distinct process counts from 1 to 16")
    return counts


def _scenarios(raw: str) -> list[str]:
    from bench.gateway.scenarios import SCENARIOS

    names = [x.strip() for x in raw.split(",") if x.strip()]
    unknown = [x for x in names if x not in SCENARIOS]
    if not names or unknown:
        which = ", ".join(unknown) if unknown else repr(raw)
        raise argparse.ArgumentTypeError(f"unknown scenario {which} (known: "
                                         f"{', '.join(SCENARIOS)})")
    return list(dict.fromkeys(names))


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 1 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{raw}: 1 to 600 seconds")
    return value


def bench_args_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of arguments (each alone parsed already), or None;
    fills in the defaults that depend on ``--scenarios``."""
    if args.scenarios is None:
        if args.peer is not None:
            return "--peer runs the scenarios against a peer: give --scenarios too"
        if args.workers is not None and len(args.workers) > 1:
            return "several --workers counts need --scenarios (the phases run one gateway)"
        args.workers = (args.workers or [2])[0]
        args.connections = args.connections or 20_000
        args.compete = bool(args.compete)
        return None
    if args.skip:
        return "--skip names phases; --scenarios runs scenarios only"
    args.workers = args.workers or [1, 2]
    args.compete = True if args.compete is None else args.compete
    return None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.workers import run
    from runtime.discovery import registered

    workers = args.workers or settings.gateway_workers
    if args.worker_id is not None:  # one of the processes a parent started: it registered
        return run(settings, workers, port=args.port, worker_id=args.worker_id)
    # Prometheus scrapes /metrics, which is served on the admin port only (never the public one)
    with registered(settings.run_dir, "gateway", settings.gateway_admin_port,
                    settings.gateway_admin_host):
        return run(settings, workers, port=args.port)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.terminal import watch

    url = args.url or f"ws://{settings.gateway_host}:{settings.gateway_port}/ws"
    return watch(url, args.match_id, args.token, "progress" if args.progress else "auto")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.gateway.cards import match_cards
    from bench.gateway.run import run_bench

    problem = bench_args_problem(args)
    if problem is not None:
        print(f"stumpcast bench gateway: {problem}", file=sys.stderr)
        return 2
    args.match_file = args.match_file or settings.cricsheet_dir / BENCH_MATCH
    try:
        cards = match_cards(args.match_file)
    except (OSError, ValueError, KeyError) as exc:
        print(f"stumpcast bench gateway: {args.match_file}: {exc}", file=sys.stderr)
        return 1
    return run_bench(args, settings, cards)
