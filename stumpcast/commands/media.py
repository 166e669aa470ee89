"""``stumpcast media worker`` and ``stumpcast bench media``."""

from __future__ import annotations

import argparse
from typing import Any

from bench import log as benchlog
from schemas.settings import Settings


def register(sub: Any, bench: Any) -> None:
    media = sub.add_parser("media", help="the media worker: live ingest to an HLS ladder",
                           description="Live ingest (RTMP, SRT, a file played live, or a "
                           "synthetic source) to an ABR HLS ladder with capture-anchored PDT and "
                           "ball-event DATERANGE markers, served on STUMPCAST_MEDIA_HTTP_PORT.")
    msub = media.add_subparsers(dest="media_command", metavar="COMMAND")
    msub.required = True
    worker = msub.add_parser("worker", help="run the media worker until interrupted",
                             description="Run the worker: ingest, encode, publish, serve "
                             "/hls/master.m3u8, /metrics, /healthz and /readyz.")
    worker.add_argument("--source", choices=("synthetic", "rtmp", "srt", "file"),
                        default="synthetic", help="live source (default: synthetic)")
    worker.add_argument("--input", default="", help="file path for --source file; a URL "
                        "overrides the RTMP/SRT listen address")
    worker.add_argument("--match-id", default="demo", help="match whose markers and scorecard "
                        "the worker follows (default: demo)")
    worker.add_argument("--no-kafka", action="store_true",
                        help="no markers from, and no segment events to, Kafka")
    worker.add_argument("--no-redis", action="store_true", help="no live score bug")
    worker.add_argument("--no-guard", action="store_true", help="never step the ladder down")
    worker.set_defaults(func=run_worker)
    b = bench.add_parser("media", help="ladder encode speed; regular vs LL-HLS glass-to-glass",
                         description="Measures the default ladder's encode speed (unpaced, "
                         "MPEG-TS and fMP4), then runs the worker live on the synthetic source, "
                         "regular HLS then LL-HLS, while headless Chromium plays it with the "
                         "page's player and reads the burned-in clock: glass-to-glass, stalls, "
                         "spoiler window, publish delay and PDT error.")
    b.add_argument("--speed-seconds", type=float, default=20.0,
                   help="wall seconds of the unpaced encode-speed run (default 20)")
    b.add_argument("--live-seconds", type=_seconds, default=60.0,
                   help="seconds of the LL-HLS live run (default 60)")
    b.add_argument("--regular-seconds", type=_seconds, default=60.0,
                   help="seconds of the regular-HLS live run (default 60)")
    b.add_argument("--edge-seconds", type=_seconds_or_zero, default=0.0,
                   help="seconds of an extra LL-HLS run played through an nginx edge (cdn-a, "
                   "the stack's template, private run folder); 0: none (default)")
    benchlog.add_no_record(b)
    b.set_defaults(func=run_bench)
    e = bench.add_parser("edge", help="origin offload of the caching edges at 1,000 and 10,000 "
                         "simulated players", description="Two nginx edges, the media origin "
                         "(synthetic segments) and the gateway on loopback; a simulated audience "
                         "(HLS players and scorecard pollers) per size, on cold caches. Reports "
                         "offload per object class and origin requests/s. Needs Redis "
                         "(`stumpcast stack up --only redis`) and nginx.")
    e.add_argument("--players", type=_sizes, default=(1000, 10000),
                   help="audience sizes, comma separated (default 1000,10000)")
    e.add_argument("--seconds", type=float, default=40.0,
                   help="seconds per audience size, join ramp included (default 40)")
    e.add_argument("--ramp", type=float, default=10.0,
                   help="seconds over which the players join (default 10)")
    e.add_argument("--td", type=int, default=2, help="target duration, seconds (default 2)")
    e.add_argument("--poll", type=float, default=5.0,
                   help="scorecard poll interval per player, seconds (default 5)")
    e.add_argument("--procs", type=int, default=2, choices=range(1, 9), metavar="N",
                   help="load generator processes (default 2)")
    benchlog.add_no_record(e)
    e.set_defaults(func=run_edge_bench)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("seconds: a number") from None
    if not 20 <= value <= 7200:
        raise argparse.ArgumentTypeError("seconds: 20 to 7200 (the player needs ~10 s to settle)")
    return value


def _seconds_or_zero(raw: str) -> float:
    return 0.0 if raw.strip() in ("0", "0.0") else _seconds(raw)


def _sizes(raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("audience sizes: integers, comma separated") from None
    if not sizes or any(not 1 <= n <= 100_000 for n in sizes):
        raise argparse.ArgumentTypeError("audience sizes: 1 to 100,000 players each")
    return sizes


def worker_config(args: argparse.Namespace, settings: Settings) -> Any:
    from media import ffmpeg_args as fa
    from media.ladder import Ladder, parse_rungs
    from media.playlist import Steering
    from media.worker import WorkerConfig
    from runtime import redisconn
    from runtime.kafka import client_config
    from schemas.access import Principal
    from schemas.store_access import RedisUser

    ladder = Ladder(parse_rungs(settings.media_ladder), fps=settings.media_fps,
                    segment_seconds=settings.media_segment_seconds, preset=settings.media_preset)
    url = args.input
    if args.source == "rtmp":
        url = url or fa.rtmp_listen_url(settings.media_rtmp_port)
    elif args.source == "srt":
        url = url or fa.srt_listen_url(settings.media_srt_port)
    top = max(ladder.rungs, key=lambda r: r.width)
    source = fa.Source(args.source, url, top.width, top.height)
    return WorkerConfig(
        work_dir=settings.media_dir, ladder=ladder, source=source, match_id=args.match_id,
        http_host=settings.media_http_host, http_port=settings.media_http_port,
        window=settings.media_window_segments,
        kafka=None if args.no_kafka else client_config(settings, Principal.MEDIA),
        redis_url=None if args.no_redis else settings.redis_url, guard=not args.no_guard,
        redis_auth=None if args.no_redis else redisconn.credentials(settings, RedisUser.MEDIA),
        redis_cluster=() if args.no_redis else settings.redis_cluster,
        steering=Steering(settings.steering_uri, settings.media_pathways)
        if settings.media_pathways else None,
        part_target=settings.media_part_target, max_blocked=settings.media_ll_max_blocked)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from media.ll_worker import LLMediaWorker
    from media.worker import MediaWorker

    cfg = worker_config(args, settings)
    kind = LLMediaWorker if settings.media_hls == "low-latency" else MediaWorker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await kind(cfg).run(stop)

    from runtime.discovery import registered

    with registered(settings.run_dir, "media", settings.media_http_port):
        asyncio.run(main())
    return 0


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.media import run

    return run(args, settings)


def run_edge_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.edge import run

    return run(args, settings)
