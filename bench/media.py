"""``stumpcast bench media``: encode speed, publish delay, PDT error and live-edge latency.

1. Encode speed: the synthetic source unpaced into the default ladder for a fixed wall time;
   speed = frames encoded / (wall seconds x fps).
2. A live run of the worker (synthetic source, Kafka and Redis off): publish delay from the
   worker's own measurements (playlist written minus the segment's last captured instant);
   PDT error = |PDT - clock burned into the segment's first frame|, read back with ffmpeg from
   every segment of every rendition; and an HTTP reader that polls the lowest rung every 100 ms
   and compares PDT with its wall clock: "listed" = first sight of a segment minus its PDT, and
   glass-to-glass = wall clock minus the PDT at a standard player's playhead, which sits the
   default HOLD-BACK of 3 target durations behind the end of the playlist (bis §4.4.3.8).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.log import median, percentile, record
from media import ffmpeg_args as fa
from media.ladder import Ladder, parse_rungs
from media.progress import ProgressParser
from media.runner import FfmpegProcs
from media.worker import MediaWorker, WorkerConfig, find_font
from schemas.settings import Settings


def default_ladder(settings: Settings) -> Ladder:
    return Ladder(parse_rungs(settings.media_ladder), fps=settings.media_fps,
                  segment_seconds=settings.media_segment_seconds, preset=settings.media_preset)


async def encode_speed(ladder: Ladder, seconds: float, work: Path) -> float:
    top = max(ladder.rungs, key=lambda r: r.width)
    src = fa.Source("synthetic", width=top.width, height=top.height)
    for rung in ladder.rungs:
        (work / rung.name).mkdir(parents=True, exist_ok=True)
    (work / "clock.txt").write_text(fa.clock_template())
    (work / "bug.txt").write_text("MI 145/3 (16.2 ov)")
    gen = fa.synthetic_args(src, ladder.fps, ladder.audio_rate, find_font(), work / "clock.txt",
                            work / "bug.txt", work / "capture.txt", realtime=False)
    procs = FfmpegProcs(fa.encoder_args(ladder, src, work), gen)
    await procs.start()
    parser, frames, began = ProgressParser(), [], time.monotonic()
    lines = procs.progress_lines()
    async with contextlib.aclosing(lines):
        async for line in lines:
            block = parser.feed(line)
            if block is not None:
                frames.append((time.monotonic(), block.frame))
            if time.monotonic() - began > seconds:
                break
    await procs.close()
    warm = [f for f in frames if f[0] - began > 3]  # skip start-up
    (t_a, f_a), (t_b, f_b) = warm[0], warm[-1]
    return (f_b - f_a) / (t_b - t_a) / ladder.fps


def _edge_reader(base: str, rung: str, hold_back: float, stop_at: float
                 ) -> tuple[list[float], list[float]]:
    """Poll a playlist: (first-sight latency of each new segment, glass-to-glass samples)."""
    import m3u8

    seen: set[str] = set()
    listed: list[float] = []
    glass: list[float] = []
    while time.time() < stop_at:
        try:
            with urllib.request.urlopen(f"{base}/hls/{rung}/index.m3u8", timeout=2) as resp:
                pl = m3u8.loads(resp.read().decode())
        except OSError:
            time.sleep(0.1)
            continue
        now = time.time()
        for seg in pl.segments:
            if seg.uri not in seen and seen:  # the first fetch lists old segments
                listed.append(now - seg.current_program_date_time.timestamp())
            seen.add(seg.uri)
        if pl.segments:
            last = pl.segments[-1]
            edge = last.current_program_date_time.timestamp() + last.duration
            glass.append(now - (edge - hold_back))
        time.sleep(0.1)
    return listed, glass


def _pdt_errors(origin: Path, rungs: list[str]) -> list[float]:
    import m3u8

    out = []
    for rung in rungs:
        for seg in m3u8.loads((origin / rung / "index.m3u8").read_text()).segments:
            probe = subprocess.run(fa.barcode_probe_args(origin / rung / seg.uri),
                                   capture_output=True, check=True, timeout=30)
            burned = fa.decode_barcode(probe.stdout) / 1000
            out.append(abs(seg.current_program_date_time.timestamp() - burned) * 1000)
    return out


async def live_run(ladder: Ladder, seconds: float, work: Path, port: int) -> dict[str, object]:
    top = max(ladder.rungs, key=lambda r: r.width)
    cfg = WorkerConfig(work_dir=work, ladder=ladder, source=fa.Source(
        "synthetic", width=top.width, height=top.height), match_id="bench", http_port=port,
        window=int(seconds) + 10)
    worker, stop = MediaWorker(cfg), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    low = min(ladder.rungs, key=lambda r: r.width).name
    listed, glass = await asyncio.to_thread(
        _edge_reader, f"http://127.0.0.1:{port}", low, 3.0 * ladder.segment_seconds,
        time.time() + seconds)
    stop.set()
    await task
    return {"delays": worker.publish_delays, "listed": listed, "glass": glass,
            "pdt": _pdt_errors(cfg.origin, [r.name for r in worker.ladder.rungs]),
            "notes": list(worker.status.notes), "launches": worker.status.launches,
            "ladder": worker.ladder}


def _rows(ladder: Ladder, speed: float, live: dict[str, object]) -> list[tuple[str, str]]:
    delays, pdt_err = live["delays"], live["pdt"]
    listed, glass = live["listed"], live["glass"]
    assert isinstance(delays, list) and isinstance(pdt_err, list)
    assert isinstance(listed, list) and isinstance(glass, list)
    ran, notes = live["ladder"], live["notes"]
    assert isinstance(ran, Ladder) and isinstance(notes, list)
    td = ladder.segment_seconds
    return [
        ("ladder", f"{'/'.join(r.name for r in ladder.rungs)} @ {ladder.fps} fps, x264 "
                   f"{ladder.preset} zerolatency, {td} s segments"),
        ("encode speed, unpaced, incl. synthetic source (x real time; target >= 1.0)",
         f"{speed:.2f}"),
        ("live run: launches / speed-guard steps / ladder at the end",
         f"{live['launches']} / {sum('below real time' in n for n in notes)} / "
         f"{'/'.join(r.name for r in ran.rungs)} {ran.preset}"),
        ("publish delay p50 / p99 / max (ms; target p99 <= 250)",
         f"{median(delays):.0f} / {percentile(delays, 99):.0f} / {max(delays):.0f}"
         f"  (n={len(delays)})"),
        ("PDT error vs burned clock, every segment of every rung, p50 / max (ms; target <= 100)",
         f"{median(pdt_err):.0f} / {max(pdt_err):.0f}  (n={len(pdt_err)})"),
        ("capture -> segment listed over HTTP, p50 / p99 (s)",
         f"{median(listed):.2f} / {percentile(listed, 99):.2f}  (n={len(listed)})"),
        (f"glass-to-glass, reader at HOLD-BACK 3 x TD = {3 * td} s, p50 / p99 (s)",
         f"{median(glass):.2f} / {percentile(glass, 99):.2f}  (n={len(glass)})"),
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    ladder = default_ladder(settings)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stumpcast-bench-") as tmp:
        speed = asyncio.run(encode_speed(ladder, args.speed_seconds, Path(tmp) / "speed"))
        print(f"encode speed {speed:.2f}x; live run of {args.live_seconds:.0f} s ...", flush=True)
        live = asyncio.run(live_run(ladder, args.live_seconds, Path(tmp) / "live",
                                    settings.media_http_port))
    load = f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    rows = _rows(ladder, speed, live) + [("machine load average (1 min)", load)]
    for name, value in rows:
        print(f"{name:90s} {value}")
    if not args.no_record:
        record("media: ladder encode speed, publish delay, PDT error, latency", rows,
               notes="Synthetic source (test pattern, tone, burned clock and barcode) on this "
                     "machine, 2 cores shared with the local stack (Kafka, Cassandra, Redis) "
                     "and other engineers' work; run under flock /tmp/stumpcast-heavy.lock.")
    return 0
