"""``stumpcast bench media``: encode speed, then regular HLS and LL-HLS glass-to-glass in Chromium.

1. Encode speed: the synthetic source unpaced into the default ladder for a fixed wall time,
   once with MPEG-TS segments and once with fMP4 parts (LL-HLS); speed = frames encoded /
   (wall seconds x fps).
2. Two live runs of the worker, one after the other (synthetic source, Kafka and Redis off):
   regular HLS, then LL-HLS. In each, headless Chromium plays the master with the match
   page's own player and reads the clock burned into each presented frame
   (``bench.media_glass``): glass-to-glass, stalls, and, for a ball "bowled" every 6 s (its
   marker enters the worker at that instant, which is also when the score is pushed), the
   spoiler window = when the video shows the ball minus when the score was pushed. Publish
   delay (whole segments) comes from the worker; PDT error = |PDT - clock burned into the
   segment's first frame| for every 5th segment of every rung, read back with ffmpeg.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


async def encode_speed(ladder: Ladder, seconds: float, work: Path,
                       frames_per_part: int | None = None) -> float:
    top = max(ladder.rungs, key=lambda r: r.width)
    src = fa.Source("synthetic", width=top.width, height=top.height)
    for rung in ladder.rungs:
        (work / rung.name).mkdir(parents=True, exist_ok=True)
    (work / "clock.txt").write_text(fa.clock_template())
    (work / "bug.txt").write_text("MI 145/3 (16.2 ov)")
    gen = fa.synthetic_args(src, ladder.fps, ladder.audio_rate, find_font(), work / "clock.txt",
                            work / "bug.txt", work / "capture.txt", realtime=False)
    procs = FfmpegProcs(fa.encoder_args(ladder, src, work, frames_per_part=frames_per_part), gen)
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


def _probe(path: Path) -> float:
    probe = subprocess.run(fa.barcode_probe_args(path), capture_output=True, check=True,
                           timeout=30)
    return fa.decode_barcode(probe.stdout) / 1000


def _explicit_pdt(seg: Any) -> float:
    # The segment's own EXT-X-PROGRAM-DATE-TIME: the m3u8 package's current_program_date_time
    # adds the durations of listed EXT-X-PARTs to the running date as if they were segments
    # (m3u8 6.x; seen on our LL playlists), so it drifts by 2 s per segment with parts.
    return float((seg.program_date_time or seg.current_program_date_time).timestamp())


def _pdt_errors(origin: Path, rungs: list[str], every: int = 5) -> list[float]:
    """|PDT - burned clock of the segment's first frame|, ms, for every ``every``-th segment of
    every rung (an fMP4 segment is probed with its init section in front)."""
    import m3u8

    out = []
    for rung in rungs:
        pl = m3u8.loads((origin / rung / "index.m3u8").read_text())
        for seg in pl.segments[::every]:
            path = origin / rung / seg.uri
            if seg.init_section is not None:
                joined = path.with_suffix(".probe.mp4")
                joined.write_bytes((origin / rung / seg.init_section.uri).read_bytes()
                                   + path.read_bytes())
                path = joined
            out.append(abs(_explicit_pdt(seg) - _probe(path)) * 1000)
    return out


async def _scorer(worker: MediaWorker, stop: asyncio.Event, every: float,
                  pushed: dict[str, float]) -> None:
    """A ball every ``every`` s: its marker enters the worker the instant it is bowled (the
    push time; the gateway's own delivery, ~30 ms p50 in its bench, is not added)."""
    from media.markers import Marker

    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        now = time.time()
        n += 1
        ident = f"bench-ball-{n}"
        worker.publisher.markers.markers[ident] = Marker(
            ident, "bench", "four", round(now * 1000), 1, f"{n // 6}.{n % 6}", "FOUR")
        pushed[ident] = now


@contextlib.contextmanager
def _edge(settings: Settings, work: Path) -> Iterator[str]:
    """cdn-a (nginx, the stack's template) in a private run folder, in front of the bench's
    origin; yields the edge's base URL."""
    env = {**os.environ, "STUMPCAST_RUN_DIR": str(work / "run"),
           "STUMPCAST_MEDIA_HTTP_PORT": str(settings.media_http_port)}

    def stack(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "stumpcast", "stack", *args], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"stack {' '.join(args)}: {out.stderr.strip()}")

    stack("up", "--only", "cdn-a", "--no-init")
    try:
        yield f"http://127.0.0.1:{settings.stack_cdn_a_port}"
    finally:
        stack("down")


async def live_run(ladder: Ladder, seconds: float, work: Path, port: int,
                   low_latency: bool, base: str | None = None) -> dict[str, Any]:
    """One live run; ``base``: where the player fetches from (default: the origin)."""
    from bench.media_glass import watch
    from media.ll_worker import LLMediaWorker

    top = max(ladder.rungs, key=lambda r: r.width)
    cfg = WorkerConfig(work_dir=work, ladder=ladder, source=fa.Source(
        "synthetic", width=top.width, height=top.height), match_id="bench", http_port=port,
        window=min(int(seconds) + 10, 450))  # the default window: its render cost is real
    worker = (LLMediaWorker if low_latency else MediaWorker)(cfg)
    stop, pushed = asyncio.Event(), {}  # type: ignore[var-annotated]
    task = asyncio.create_task(worker.run(stop))
    scorer = asyncio.create_task(_scorer(worker, stop, 6.0, pushed))
    base = base or f"http://127.0.0.1:{port}"
    page = await asyncio.to_thread(watch, f"{base}/hls/master.m3u8", seconds)
    stop.set()
    await asyncio.gather(task, scorer)
    parts = list(getattr(worker.publisher, "part_delays", []))
    return {"delays": worker.publish_delays, "parts": parts, "page": page, "pushed": pushed,
            "pdt": _pdt_errors(cfg.origin, [r.name for r in worker.ladder.rungs]),
            "notes": list(worker.status.notes), "launches": worker.status.launches,
            "ladder": worker.ladder}


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    return f"{median(xs):.2f} / {percentile(xs, 99):.2f} / {max(xs):.2f}  (n={len(xs)})"


def _mode_rows(name: str, live: dict[str, Any]) -> list[tuple[str, str]]:
    from bench.media_glass import settle, spoiler_windows

    page, delays, pdt_err = live["page"], live["delays"], live["pdt"]
    glass = settle(page["glass"])
    shown = page["shown"]
    spoil = spoiler_windows(live["pushed"], shown, page["glass"])
    early = sum(1 for i, (_, seen) in page["markers"].items() if i in shown and seen <= shown[i])
    ran, notes = live["ladder"], live["notes"]
    return [
        (f"{name}: glass-to-glass in Chromium vs burned clock, p50 / p99 / max (s)", _fmt(glass)),
        (f"{name}: stalls after start (count, total s) / frames not decodable",
         f"{page['stalls']} ({page['stallMs'] / 1000:.1f} s) / {page['bad']}"),
        (f"{name}: spoiler window = video shows ball - score pushed, p50 / p99 / max (s)",
         _fmt(spoil)),
        (f"{name}: ball markers on the page before their ball is on screen",
         f"{early} of {len(shown)} shown ({len(live['pushed'])} pushed)"),
        (f"{name}: segment publish delay (last frame captured -> listed) p50 / p99 (ms)",
         f"{median(delays):.0f} / {percentile(delays, 99):.0f}  (n={len(delays)})"
         if delays else "none"),
        (f"{name}: part publish delay (last frame captured -> listed) p50 / p99 (ms)",
         f"{median(live['parts']):.0f} / {percentile(live['parts'], 99):.0f}  "
         f"(n={len(live['parts'])})" if live["parts"] else "no parts (regular HLS)"),
        (f"{name}: PDT error vs burned clock, p50 / max (ms)",
         f"{median(pdt_err):.0f} / {max(pdt_err):.0f}  (n={len(pdt_err)})"
         if pdt_err else "none"),
        (f"{name}: launches / speed-guard steps / ladder at the end / hls.js errors",
         f"{live['launches']} / {sum('below real time' in n for n in notes)} / "
         f"{'/'.join(r.name for r in ran.rungs)} {ran.preset} / {len(page['errors'])}"),
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    ladder = default_ladder(settings)
    load_before = os.getloadavg()
    frames = fa.part_frames(ladder, settings.media_part_target)
    with tempfile.TemporaryDirectory(prefix="stumpcast-bench-") as tmp:
        speed = asyncio.run(encode_speed(ladder, args.speed_seconds, Path(tmp) / "speed"))
        speed_ll = asyncio.run(encode_speed(ladder, args.speed_seconds, Path(tmp) / "speed-ll",
                                            frames))
        print(f"encode speed {speed:.2f}x (TS), {speed_ll:.2f}x (fMP4); regular HLS for "
              f"{args.regular_seconds:.0f} s, then LL-HLS for {args.live_seconds:.0f} s ...",
              flush=True)
        regular = asyncio.run(live_run(ladder, args.regular_seconds, Path(tmp) / "regular",
                                       settings.media_http_port, low_latency=False))
        load_mid = os.getloadavg()
        low = asyncio.run(live_run(ladder, args.live_seconds, Path(tmp) / "ll",
                                   settings.media_http_port, low_latency=True))
        edge = None
        if args.edge_seconds:
            with _edge(settings, Path(tmp)) as base:
                edge = asyncio.run(live_run(ladder, args.edge_seconds, Path(tmp) / "ll-edge",
                                            settings.media_http_port, True, base))
    load = (f"{load_before[0]:.1f} before, {load_mid[0]:.1f} between the runs, "
            f"{os.getloadavg()[0]:.1f} after")
    td = ladder.segment_seconds
    rows = [("ladder", f"{'/'.join(r.name for r in ladder.rungs)} @ {ladder.fps} fps, x264 "
                       f"{ladder.preset} zerolatency, {td} s segments, LL parts "
                       f"{frames / ladder.fps:.3f} s"),
            ("encode speed, unpaced, incl. synthetic source, MPEG-TS / fMP4 parts "
             "(x real time; target >= 1.0)", f"{speed:.2f} / {speed_ll:.2f}")]
    rows += _mode_rows(f"regular HLS ({args.regular_seconds:.0f} s)", regular)
    rows += _mode_rows(f"LL-HLS ({args.live_seconds:.0f} s)", low)
    if edge is not None:
        rows += _mode_rows(f"LL-HLS through nginx cdn-a ({args.edge_seconds:.0f} s)", edge)[:4]
    rows.append(("machine load average (1 min)", load))
    for name, value in rows:
        print(f"{name:90s} {value}")
    if not args.no_record:
        record("media: regular HLS vs LL-HLS, glass-to-glass in Chromium, encode speed", rows,
               notes="Synthetic source (test pattern, tone, burned clock and barcode); the "
                     "match page's own Player (hls.js) in headless Chromium reads the barcode "
                     "of every other presented frame. Both modes in one run, one after the "
                     "other, on this 2-core machine shared with other engineers' work.")
    return 0
