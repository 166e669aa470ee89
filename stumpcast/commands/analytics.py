"""``stumpcast analytics worker | bench heartbeats``.

Handlers are thin: they parse, build from ``Settings`` and call into ``analytics`` and
``bench.analytics``. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any

from schemas.settings import Settings


def cmd_analytics_worker(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.config import WorkerConfig
    from analytics.worker import run_worker

    config = WorkerConfig()
    if args.topic or args.group:
        config = WorkerConfig(topic=args.topic or config.topic, group=args.group or config.group,
                              out_topic=args.out_topic or config.out_topic)
    from runtime.discovery import registered

    with registered(settings.run_dir, "analytics", settings.analytics_metrics_port):
        return run_worker(settings, mode=args.mode, engine=args.engine, config=config)


def cmd_bench_heartbeats(args: argparse.Namespace, settings: Settings) -> int:
    from bench.analytics import run_bench
    from bench.log import record

    modes = ("exact", "hll") if args.mode == "both" else (args.mode,)
    res = run_bench(settings, args.viewers, args.beats, args.probes, modes,
                    faust=not args.no_faust)
    if not args.no_record:
        record("analytics: heartbeats/s per worker process, heartbeat -> count delay", res.rows,
               notes="One worker process (confluent-kafka batch loop, 1 s flush) on the shared "
               "2-core machine with Kafka, Redis and Cassandra; a fresh 8-partition topic; run "
               "under `flock /tmp/stumpcast-heavy.lock`. Target >= 50,000 heartbeats/s per "
               "worker (Hotstar Pulse: ~30M beacons/min = 500k/s at 25.3M viewers; "
               "industry.md §1c).")
    return 0


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("analytics", help="viewer analytics: concurrency, views, quality")
    acmds = p.add_subparsers(dest="analytics_command", metavar="ACTION")
    acmds.required = True
    w = acmds.add_parser("worker", help="run one analytics worker",
                         description="Consume viewer.heartbeats (confluent-kafka batches), count "
                         "concurrent viewers per match/region/CDN over 2 heartbeat intervals, "
                         "views, bitrate and rebuffering; write Redis (RedisKeys.watching, "
                         "concurrency, views) and analytics.concurrency. /metrics, /healthz, "
                         "/readyz on STUMPCAST_ANALYTICS_METRICS_PORT.")
    w.add_argument("--mode", choices=("exact", "hll"), default=None,
                   help="distinct counting (default: STUMPCAST_ANALYTICS_MODE)")
    w.add_argument("--engine", choices=("confluent", "faust"), default="confluent",
                   help="confluent-kafka batch loop (default: exact across restarts, faster) "
                   "or the faust agent (aiokafka)")
    w.add_argument("--topic", help=argparse.SUPPRESS)       # tests and benches only
    w.add_argument("--out-topic", help=argparse.SUPPRESS)
    w.add_argument("--group", help=argparse.SUPPRESS)
    w.set_defaults(func=cmd_analytics_worker)

    b = bench.add_parser("heartbeats", help="analytics worker heartbeats/s and count delay",
                         description="Produces a simulated audience to a fresh 8-partition "
                         "topic, measures a consume+decode baseline, the worker (exact, hll), the "
                         "HLL error and the heartbeat -> watching-count delay. Run under `flock "
                         "/tmp/stumpcast-heavy.lock`.")
    b.add_argument("--viewers", type=int, default=1_000_000, help="simulated sessions")
    b.add_argument("--beats", type=int, default=3_000_000, help="heartbeats produced")
    b.add_argument("--probes", type=int, default=30, help="delay probes")
    b.add_argument("--mode", choices=("exact", "hll", "both"), default="both")
    b.add_argument("--no-faust", action="store_true", help="skip the faust engine's run")
    b.set_defaults(func=cmd_bench_heartbeats)
