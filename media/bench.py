"""``stumpcast bench media``: encode speed, publish delay, PDT error and live-edge latency.

1. Encode speed: the synthetic source unpaced into the default ladder for a fixed wall time;
   speed = frames encoded / (wall seconds x fps).
2. A live run of the worker (synthetic source, Kafka and Redis off): publish delay from the
   worker's own measurements; PDT error = |PDT - clock burned into the segment's first frame|,
   read back with ffmpeg; live-edge latency = when an HTTP reader first sees a segment in the
   playlist, minus the segment's PDT (glass-to-glass for a player at the live edge; a standard
   player adds its hold-back of 3 target durations).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from media import ffmpeg_args as fa
from media.ladder import Ladder, parse_rungs
from media.progress import ProgressParser
from media.runner import FfmpegProcs
from media.worker import MediaWorker, WorkerConfig, find_font
from schemas.settings import Settings
from stumpcast.benchlog import median, percentile, record


def default_ladder(settings: Settings) -> Ladder:
    return Ladder(parse_rungs(settings.media_ladder), fps=settings.media_fps,
                  segment_seconds=settings.media_segment_seconds, preset=settings.media_preset)


async def encode_speed(ladder: Ladder, seconds: float, work: Path) -> float:
    top = max(ladder.rungs, key=lambda r: r.width)
    src = fa.Source("synthetic", width=top.width, height=top.height)
    (work / "clock.txt").write_text(fa.clock_template())
    (work / "bug.txt").write_text("MI 145/3 (16.2 ov)")
    for rung in ladder.rungs:
        (work / rung.name).mkdir(parents=True, exist_ok=True)
    gen = fa.synthetic_args(src, ladder.fps, ladder.audio_rate, find_font(), work / "clock.txt",
                            work / "bug.txt", work / "capture.txt", realtime=False)
    procs = FfmpegProcs(fa.encoder_args(ladder, src, work), gen)
    await procs.start()
    parser, frames, began = ProgressParser(), [], time.monotonic()
    async for line in procs.progress_lines():
        block = parser.feed(line)
        if block is not None:
            frames.append((time.monotonic(), block.frame))
        if time.monotonic() - began > seconds:
            break
    await procs.stop()
    warm = [f for f in frames if f[0] - began > 3]  # skip start-up
    (t_a, f_a), (t_b, f_b) = warm[0], warm[-1]
    return (f_b - f_a) / (t_b - t_a) / ladder.fps


def _edge_reader(base: str, stop_at: float) -> list[float]:
    """Poll the lowest rung's playlist; latency of each newly listed segment, in seconds."""
    import m3u8

    seen: set[str] = set()
    latencies: list[float] = []
    while time.time() < stop_at:
        try:
            with urllib.request.urlopen(f"{base}/hls/360p/index.m3u8", timeout=2) as resp:
                pl = m3u8.loads(resp.read().decode())
        except OSError:
            time.sleep(0.05)
            continue
        now = time.time()
        for seg in pl.segments:
            if seg.uri not in seen:
                if seen:  # the first fetch lists old segments; only count fresh ones
                    latencies.append(now - seg.current_program_date_time.timestamp())
                seen.add(seg.uri)
        time.sleep(0.05)
    return latencies


def _pdt_errors(origin: Path) -> list[float]:
    import m3u8

    pl = m3u8.loads((origin / "1080p" / "index.m3u8").read_text())
    out = []
    for seg in pl.segments:
        probe = subprocess.run(fa.barcode_probe_args(origin / "1080p" / seg.uri),
                               capture_output=True, check=True, timeout=30)
        burned = fa.decode_barcode(probe.stdout) / 1000
        out.append(abs(seg.current_program_date_time.timestamp() - burned) * 1000)
    return out


async def live_run(ladder: Ladder, seconds: float, work: Path, port: int
                   ) -> tuple[list[float], list[float], list[float]]:
    top = max(ladder.rungs, key=lambda r: r.width)
    cfg = WorkerConfig(work_dir=work, ladder=ladder, source=fa.Source(
        "synthetic", width=top.width, height=top.height), match_id="bench", http_port=port,
        window=int(seconds) + 10)
    worker, stop = MediaWorker(cfg), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    reader = asyncio.to_thread(_edge_reader, f"http://127.0.0.1:{port}", time.time() + seconds)
    latencies = await reader
    stop.set()
    await task
    return worker.publish_delays, _pdt_errors(cfg.origin), latencies


def run(args: argparse.Namespace, settings: Settings) -> int:
    ladder = default_ladder(settings)
    with tempfile.TemporaryDirectory(prefix="stumpcast-bench-") as tmp:
        speed = asyncio.run(encode_speed(ladder, args.speed_seconds, Path(tmp) / "speed"))
        delays, pdt_err, edge = asyncio.run(live_run(
            ladder, args.live_seconds, Path(tmp) / "live", settings.media_http_port))
    rows = [
        ("ladder", f"{'/'.join(r.name for r in ladder.rungs)} @ {ladder.fps} fps, x264 "
                   f"{ladder.preset} zerolatency, {ladder.segment_seconds} s segments"),
        ("encode speed, unpaced (x real time; target >= 1.0)", f"{speed:.2f}"),
        ("publish delay p50 / p99 (ms; target p99 <= 250)",
         f"{median(delays):.0f} / {percentile(delays, 99):.0f}  (n={len(delays)})"),
        ("PDT error vs burned clock p50 / max (ms; target <= 100)",
         f"{median(pdt_err):.0f} / {max(pdt_err):.0f}  (n={len(pdt_err)})"),
        ("live-edge latency capture -> listed, p50 / p99 (s)",
         f"{median(edge):.2f} / {percentile(edge, 99):.2f}  (n={len(edge)})"),
        ("glass-to-glass at 3 x TD hold-back (s, p50)",
         f"{median(edge) + 3 * ladder.segment_seconds:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:60s} {value}")
    if not args.no_record:
        record("media: ladder encode speed, publish delay, PDT error, latency", rows,
               notes="Synthetic 1080p source (test pattern, tone, burned clock) on this machine, "
                     "sharing the cores with the local stack.")
    return 0
