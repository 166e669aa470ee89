"""``stumpcast analytics worker | notifier worker | webhooks ... | plan | bench heartbeats``.

Handlers are thin: they parse, build from ``Settings`` and call into ``streams.analytics``,
``streams.delivery`` and ``stumpcast.plan``. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from schemas.settings import Settings


def cmd_analytics_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.analytics.worker import WorkerConfig, run_worker

    config = WorkerConfig()
    if args.topic or args.group:
        config = WorkerConfig(topic=args.topic or config.topic, group=args.group or config.group,
                              out_topic=args.out_topic or config.out_topic)
    return run_worker(settings, mode=args.mode, engine=args.engine, config=config)


def cmd_notifier_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.delivery.notifier import run_notifier

    return run_notifier(settings)


def _redis(settings: Settings) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis_url)


def cmd_webhooks_add(args: argparse.Namespace, settings: Settings) -> int:
    from streams.delivery import subscriptions

    try:
        sub = subscriptions.make(args.url, args.secret, match_id=args.match,
                                 no_spoilers=args.no_spoilers, session_id=args.session)
    except subscriptions.SubscriptionError as exc:
        print(f"webhooks add: {exc}", file=sys.stderr)
        return 2
    subscriptions.add(_redis(settings), sub)
    print(sub.id)
    return 0


def cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.topology import RedisKeys
    from streams.delivery import subscriptions

    subs = subscriptions.load_all(_redis(settings).hgetall(RedisKeys.webhooks))
    for sub in sorted(subs.values(), key=lambda s: s.id):
        spoil = f" no-spoilers session={sub.session_id}" if sub.no_spoilers else ""
        print(f"{sub.id}  {sub.url}  match={sub.match_id or '*'}{spoil}")
    return 0


def cmd_webhooks_remove(args: argparse.Namespace, settings: Settings) -> int:
    from streams.delivery import subscriptions

    if subscriptions.remove(_redis(settings), args.id):
        return 0
    print(f"webhooks remove: no webhook {args.id}", file=sys.stderr)
    return 1


def cmd_webhooks_dead(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.topology import RedisKeys

    for entry_id, fields in _redis(settings).xrevrange(RedisKeys.webhook_dead_letters,
                                                       count=args.limit):
        f = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        print(f"{entry_id.decode()}  {f.get('subscription')}  {f.get('id')}  "
              f"{f.get('attempts')} attempts  {f.get('reason')}")
    return 0


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stumpcast.plan import plan_text

    print(plan_text(args.viewers, args.matches, Path(args.benchmarks), headroom=args.headroom,
                    interval_s=settings.heartbeat_interval))
    return 0


def cmd_bench_heartbeats(args: argparse.Namespace, settings: Settings) -> int:
    from streams.analytics.bench import run_bench
    from stumpcast.benchlog import record

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

    p = sub.add_parser("notifier", help="webhook delivery of match notifications")
    ncmds = p.add_subparsers(dest="notifier_command", metavar="ACTION")
    ncmds.required = True
    w = ncmds.add_parser("worker", help="run one notifier",
                         description="Consume match.notifications and deliver signed webhooks "
                         "with retries, dead letters, idempotency by id and the no-spoilers "
                         "hold. /metrics, /healthz, /readyz on STUMPCAST_NOTIFIER_METRICS_PORT.")
    w.set_defaults(func=cmd_notifier_worker)
    _register_webhooks(sub)

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


def _register_webhooks(sub: Any) -> None:
    p = sub.add_parser("webhooks", help="register webhooks for match notifications")
    wcmds = p.add_subparsers(dest="webhooks_command", metavar="ACTION")
    wcmds.required = True
    a = wcmds.add_parser("add", help="register (or update) a webhook; prints its id",
                         description="Deliveries are POSTs of the notification JSON, signed "
                         "with HMAC-SHA256 (X-Stumpcast-Signature: t=<unix>,v1=<hex>).")
    a.add_argument("url")
    a.add_argument("--secret", required=True, help="HMAC-SHA256 signing secret")
    a.add_argument("--match", help="only this match (default: every match)")
    a.add_argument("--no-spoilers", action="store_true",
                   help="hold each notification until the session's video shows the ball")
    a.add_argument("--session", help="player session whose playhead gates --no-spoilers")
    a.set_defaults(func=cmd_webhooks_add)
    ls = wcmds.add_parser("list", help="list webhooks")
    ls.set_defaults(func=cmd_webhooks_list)
    rm = wcmds.add_parser("remove", help="remove a webhook by id")
    rm.add_argument("id")
    rm.set_defaults(func=cmd_webhooks_remove)
    d = wcmds.add_parser("dead-letters", help="show the newest undeliverable notifications")
    d.add_argument("--limit", type=int, default=20)
    d.set_defaults(func=cmd_webhooks_dead)
