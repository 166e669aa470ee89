"""``stumpcast replay | produce | streams worker | rebuild | tail | bench streams``.

Handlers are thin: they parse, build what they need from ``Settings`` and call into
``streams``. Heavy imports happen inside the handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench import log as benchlog
from schemas.settings import Settings


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from streams import cricsheet
    from streams.producer import Ticker, pace, scorer_producer

    path = Path(args.match)
    match_id = args.match_id or f"{path.stem}"
    events = cricsheet.import_match(cricsheet.load(path), match_id, seed=args.seed)
    producer = scorer_producer(settings, args.scorer)
    ticker = Ticker()
    columns = (TextColumn(f"[bold]{match_id}[/]"), BarColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, disable=args.quiet) as bar:
        task = bar.add_task("", total=len(events))
        started = time.monotonic()
        for due, event in pace(events, args.speed):
            wait = due - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            producer.send(event)
            ticker.see(event)
            bar.update(task, advance=1, description=ticker.text())
        left = producer.flush()
    if left or producer.failed:
        print(f"replay: {left} unsent, {len(producer.failed)} failed: {producer.failed[:3]}",
              file=sys.stderr)
        return 1
    print(f"replay: {match_id}: {producer.delivered} events, {ticker.text()}")
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from runtime.secrets import scorer_for_source
    from schemas.signing import Registry
    from streams.producer import EventProducer, parse_lines, scorer_producer

    registry = Registry.load(settings.scorer_registry)
    producers: dict[str, EventProducer] = {}
    bad = 0
    for result in parse_lines(sys.stdin.buffer):
        event, error = result.event, result.error
        scorer = None
        if event is not None:
            scorer = args.scorer or scorer_for_source(settings, registry, event.source)
            if scorer is None:
                error = (f"no scorer key here may claim source {event.source!r} (see "
                         "`stumpcast scorers list`, or --scorer)")
        if event is None or scorer is None:
            bad += 1
            print(f"produce: line {result.lineno}: {error}", file=sys.stderr)
            continue
        if scorer not in producers:
            producers[scorer] = scorer_producer(settings, scorer)
        producers[scorer].send(event)
    left = sum(p.flush() for p in producers.values())
    delivered = sum(p.delivered for p in producers.values())
    failed = sum(len(p.failed) for p in producers.values())
    print(f"produce: {delivered} delivered, {bad} rejected, {left + failed} failed",
          file=sys.stderr)
    return 1 if bad or left or failed else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from runtime.discovery import registered
    from streams.app import run_worker

    with registered(settings.run_dir, "streams", settings.streams_metrics_port):
        return run_worker(settings)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from streams.ingest import run

    asyncio.run(run(settings))
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from streams.rebuild import rebuild

    report = asyncio.run(rebuild(settings, args.match_id))
    print(report.text())
    return 0 if report.ok else 1


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tail import tail

    return tail(settings, args.topic, from_beginning=args.from_beginning, limit=args.limit,
                idle=args.idle, principal=args.principal)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.streams import parse_parts, run_bench

    try:
        parse_parts(args.parts)
        if args.fault_speed <= 0 or args.fault_matches < 1:
            raise ValueError("--fault-speed must be > 0 and --fault-matches >= 1")
    except ValueError as exc:
        print(f"stumpcast bench streams: {exc}", file=sys.stderr)
        return 2
    return run_bench(settings, args)


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("replay", help="play a Cricsheet match into match.events",
                       description="Import a Cricsheet JSON match as events and produce them "
                       "(idempotent producer, acks=all, keyed by match) in real time or N times "
                       "faster. Several replays may run at once.")
    p.add_argument("match", help="path to a Cricsheet JSON file")
    p.add_argument("--speed", type=float, default=1.0,
                   help="N times real time (default 1); 0 = as fast as possible")
    p.add_argument("--match-id", help="match id to use (default: the file's name)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ball timestamps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--scorer", default="cricsheet",
                   help="sign and write as this scorer (default cricsheet; its key and Kafka "
                   "password come from STUMPCAST_SECRETS_DIR)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("produce", help="produce JSON-line events from stdin",
                       description="Read one event per line on stdin, validate each (a bad "
                       "line is reported with its number and skipped), sign each as a "
                       "scorer that may claim its source, produce the rest, flush. Exit 1 if "
                       "any line was rejected or not delivered.")
    p.add_argument("--scorer", help="sign and write every event as this scorer (default: per "
                   "event, a registered scorer whose key is here and who may claim its source)")
    p.set_defaults(func=cmd_produce)

    streams = sub.add_parser("streams", help="the streams worker",
                             description="Kafka match events → Redis views, notifications, "
                             "the compacted scorecards topic and the Cassandra event store.")
    scmds = streams.add_subparsers(dest="streams_command", metavar="ACTION")
    scmds.required = True
    p = scmds.add_parser("worker", help="run one worker of the consumer group",
                         description="A faust worker (aiokafka transport) in the "
                         "stumpcast-streams group; /metrics, /healthz, /readyz on "
                         "STUMPCAST_STREAMS_METRICS_PORT. Several may run at once.")
    p.set_defaults(func=cmd_worker)

    ingest = sub.add_parser("ingest", help="the scorer ingest API",
                            description="POST /v1/matches/{id}/events with a scorer's bearer "
                            "token: each event is checked, signed with that scorer's key and "
                            "written to match.events as its Kafka principal; idempotent by "
                            "event_id (docs/protocol.md, Scorer ingest API).")
    icmds = ingest.add_subparsers(dest="ingest_command", metavar="ACTION")
    icmds.required = True
    p = icmds.add_parser("serve", help="serve the ingest API on STUMPCAST_INGEST_PORT")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("rebuild", help="rebuild a match's Redis view from the event store",
                       description="Fold the match's events from Cassandra, compare with the "
                       "live view, and write the result under a new epoch (clients take a "
                       "fresh snapshot). Exit 1 if the live view differed.")
    p.add_argument("match_id")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("tail", help="print a topic's messages as JSON lines",
                       description="Consume a topic (no consumer group) and print each message "
                       "as one JSON object: partition, offset, key and the decoded value.")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest offset")
    p.add_argument("--limit", type=int, default=0, help="stop after N messages (0 = never)")
    p.add_argument("--idle", type=float, default=0.0,
                   help="stop after N seconds without a message (0 = never)")
    p.add_argument("--as", dest="principal", default="analyst",
                   choices=("analyst", "admin"),
                   help="Kafka principal: analyst (default) reads the derived topics only; "
                   "admin reads any (e.g. match.events.dlq)")
    p.set_defaults(func=cmd_tail)

    p = bench.add_parser("streams", help="worker throughput, produce→Redis latency, staleness "
                         "when partitions move, recovery after a SIGKILL",
                         description="Runs real workers (subprocesses) against the stack; "
                         "measures events/s at --speed 0 and produce→Redis-commit latency at 10 "
                         "matches x 1 event/s and 100 events/s, with a plain confluent-kafka → "
                         "Redis loop as the baseline (one worker); then, during live replays, "
                         "the view staleness when a worker joins or leaves and the recovery "
                         "after a SIGKILL (restarted at once, or not). Needs the streams group "
                         "to itself. Run under `flock /tmp/stumpcast-heavy.lock`.")
    p.add_argument("--events", type=int, default=6000, help="events for the throughput run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each latency run")
    p.add_argument("--rounds", type=int, default=3,
                   help="throughput rounds, worker and plain loop alternating (median reported)")
    p.add_argument("--parts", default="throughput,latency,faults",
                   help="what to run, comma separated (default: all three)")
    p.add_argument("--fault-speed", type=float, default=120.0,
                   help="replay speed of the fault run (default 120: a ball every ~0.3 s)")
    p.add_argument("--fault-matches", type=int, default=6,
                   help="matches replayed during the fault run (default 6)")
    benchlog.add_no_record(p)
    p.set_defaults(func=cmd_bench)
