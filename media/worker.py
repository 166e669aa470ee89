"""The media worker: supervise ffmpeg launches, publish what they stage, serve the origin.

Thin shell over the pure parts (ffmpeg_args, playlist, markers, lint, progress). One *launch*
is one ffmpeg encoder process (plus the synthetic generator, if used) with its own capture
anchor (epoch ms of encoder PTS 0, measured: see ``media.ffmpeg_args``); when it ends, for
whatever reason, the worker reports why, waits a backoff and starts the next launch.
Publishing continues the same timeline: numbering never jumps, and the first segment of a
launch carries EXT-X-DISCONTINUITY with a freshly anchored PDT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media import ffmpeg_args as fa
from media.feeds import MarkerFeed, SegmentSink, marker_start_ms, scorebug_loop
from media.ladder import Ladder
from media.metrics import MediaMetrics
from media.playlist import Steering
from media.progress import ProgressParser, SpeedGuard
from media.publisher import Publisher, StagedSet
from media.runner import Backoff, FfmpegProcs, classify_exit
from media.segments import SegmentError, check_ts, parse_list

log = logging.getLogger("stumpcast.media.worker")

FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def find_font() -> Path:
    for candidate in FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no TrueType font for drawtext; install fonts-dejavu-core")


@dataclass
class WorkerConfig:
    work_dir: Path
    ladder: Ladder
    source: fa.Source
    match_id: str
    http_host: str = "127.0.0.1"
    http_port: int = 18081
    window: int = 450
    kafka: Mapping[str, Any] | None = None  # media principal's client settings; None: off
    redis_url: str | None = None
    redis_auth: tuple[str, str] | None = None  # runtime.redisconn.credentials(s, "media")
    redis_cluster: tuple[str, ...] = ()  # Redis Cluster seed nodes; (): the one of redis_url
    stall_timeout: float = 6.0
    startup_timeout: float = 20.0
    guard: bool = True
    steering: Steering | None = None
    part_target: float = 0.4  # LL-HLS only (media.ll_worker)
    max_blocked: int = 2000  # LL-HLS only

    @property
    def origin(self) -> Path:
        return self.work_dir / "origin"

    @property
    def staging(self) -> Path:
        return self.work_dir / "staging"


@dataclass
class Status:
    state: str = "starting"
    last_exit: str | None = None
    launches: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Launch:
    """One encoder run: start, watch progress and staging, publish, end with a reason."""

    def __init__(self, worker: MediaWorker, ladder: Ladder) -> None:
        self.w, self.ladder = worker, ladder
        self.launch_id = int(time.time() * 1000)
        self.dir = worker.cfg.staging / str(self.launch_id)
        self.capture_note = self.dir / "capture.txt"
        # Epoch ms of encoder PTS 0: from the source's capture clock (synthetic) or, for a
        # foreign source, the earliest arrival seen in -progress (min of wall - output time).
        self.anchor_ms: int | None = None
        self.arrival_ms: float | None = None
        self.next_index = 0
        self.frames = 0
        self.last_frame_change = time.monotonic()
        self.guard = SpeedGuard(fps=ladder.fps)
        self.too_slow = False
        self.failure: str | None = None  # set by a subclass that cannot go on (a reason)

    def _argv(self) -> tuple[list[str], list[str] | None]:
        src = self.w.cfg.source
        enc = self._encoder_argv(src)
        if src.kind != "synthetic":
            return enc, None
        clock = self.dir / "clock.txt"
        clock.write_text(fa.clock_template())
        gen = fa.synthetic_args(src, self.ladder.fps, self.ladder.audio_rate, find_font(),
                                clock, self.w.bug_file, self.capture_note)
        return enc, gen

    def _encoder_argv(self, src: fa.Source) -> list[str]:
        return fa.encoder_args(self.ladder, src, self.dir)

    async def run(self, stop: asyncio.Event) -> str:
        for rung in self.ladder.rungs:
            (self.dir / rung.name).mkdir(parents=True, exist_ok=True)
        procs = FfmpegProcs(*self._argv())
        await procs.start()
        self.w.status.pids = procs.pids
        tasks = [asyncio.create_task(c) for c in
                 (self._progress(procs), procs.collect_stderr(), self._poll_loop(stop))]
        exited = asyncio.create_task(procs.wait())
        reason = await self._watch(exited, stop)
        await procs.stop()
        rc = await procs.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await procs.close()
        self._publish_ready()  # segments the encoder closed on its way out
        reason = reason or classify_exit(rc, list(procs.stderr_tail), stop.is_set(),
                                         had_frames=self.frames > 0)
        if reason not in {"stopped", "input_ended"}:
            log.warning("ffmpeg launch ended", extra={"reason": reason, "rc": rc,
                                                      "stderr": list(procs.stderr_tail)[-5:]})
        shutil.rmtree(self.dir, ignore_errors=True)
        return reason

    async def _watch(self, exited: asyncio.Task[int | None], stop: asyncio.Event) -> str | None:
        started = time.monotonic()
        listening = self.w.cfg.source.kind in {"rtmp", "srt"}
        while not exited.done():
            if stop.is_set():
                return "stopped"
            now = time.monotonic()
            if self.too_slow:
                return "too_slow"
            if self.failure is not None:
                return self.failure
            if self.frames == 0:
                self.w.status.state = "waiting_for_input"
                if not listening and now - started > self.w.cfg.startup_timeout:
                    return "no_input"
            elif now - self.last_frame_change > self.w.cfg.stall_timeout:
                return "input_stalled"
            else:
                self.w.status.state = "live"
            await asyncio.wait([exited], timeout=0.2)
        return None

    async def _progress(self, procs: FfmpegProcs) -> None:
        parser = ProgressParser()
        async for line in procs.progress_lines():
            block = parser.feed(line)
            if block is None:
                continue
            now = time.monotonic()
            if block.frame != self.frames:
                self.frames, self.last_frame_change = block.frame, now
            if block.out_time_us > 0:
                arrival = time.time() * 1000 - block.out_time_us / 1000
                self.arrival_ms = min(arrival, self.arrival_ms or arrival)
                if self.anchor_ms is not None:
                    self.w.metrics.pdt_drift.set((arrival - self.anchor_ms) / 1000)
            if self.guard.observe(now, block.frame) and self.w.cfg.guard:
                self.too_slow = True
            speed = self.guard.speed()
            if speed is not None:
                self.w.metrics.encode_speed.set(speed)

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._publish_ready()
            await asyncio.sleep(0.05)

    def _listed(self) -> dict[str, dict[int, Any]]:
        out: dict[str, dict[int, Any]] = {}
        for rung in self.ladder.rungs:
            path = self.dir / rung.name / "list.csv"
            text = path.read_text() if path.exists() else ""
            out[rung.name] = {s.index: s for s in parse_list(text)}
        return out

    def _publish_ready(self) -> None:
        listed = self._listed()
        while all(self.next_index in by_index for by_index in listed.values()):
            index = self.next_index
            try:
                staged = self._stage(index, {n: b[index] for n, b in listed.items()})
            except (SegmentError, OSError) as exc:
                self.next_index += 1
                self.w.metrics.errors.labels("bad_segment").inc()
                log.error("segment not published", extra={"index": index, "error": str(exc)})
                continue
            if staged is None:
                return  # no capture anchor yet: the note or a progress block is on its way
            self.next_index += 1
            self.w.publish(staged)

    def _anchor(self, first_pts: float) -> int | None:
        """Fix the launch's anchor from its first segment (once; the timeline is CFR)."""
        if self.anchor_ms is None:
            if self.w.cfg.source.kind == "synthetic":
                text = self.capture_note.read_text() if self.capture_note.exists() else ""
                capture0 = fa.parse_capture_note(text, self.ladder.fps)
                if capture0 is not None:
                    self.anchor_ms = capture0 - round(first_pts * 1000)
            elif self.arrival_ms is not None:
                self.anchor_ms = round(self.arrival_ms)
        return self.anchor_ms

    def _stage(self, index: int, entries: dict[str, Any]) -> StagedSet | None:
        paths = {n: self.dir / n / f"{index}.ts" for n in entries}
        firsts = {n: check_ts(p.read_bytes()) for n, p in paths.items()}
        ref = self.ladder.rungs[0].name
        anchor = self._anchor(firsts[ref])
        if anchor is None:
            return None
        return StagedSet(index=index, anchor_ms=anchor, first_pts=firsts[ref],
                         end=entries[ref].end, paths=paths,
                         sizes={n: p.stat().st_size for n, p in paths.items()},
                         new_launch=index == 0)


class MediaWorker:
    def __init__(self, cfg: WorkerConfig, metrics: MediaMetrics | None = None) -> None:
        self.cfg = cfg
        self.ladder = cfg.ladder
        self.metrics = metrics or MediaMetrics()
        self.status = Status()
        self.publisher = self._make_publisher()
        self.bug_file = cfg.work_dir / "scorebug.txt"
        self.sink: SegmentSink | None = None
        self.publish_delays: list[float] = []

    def _make_publisher(self) -> Publisher:
        cfg = self.cfg
        return Publisher(cfg.origin, cfg.ladder, cfg.match_id, cfg.window, cfg.steering)

    def _new_launch(self) -> Launch:
        return Launch(self, self.ladder)

    def _build_app(self, health: Any) -> Any:
        from media.origin import build_app

        return build_app(self.cfg.origin, self.ladder.segment_seconds, health)

    def publish(self, staged: StagedSet) -> None:
        self.published(*self.publisher.publish(staged))

    def published(self, events: list[Any], problems: list[Any]) -> None:
        if problems:
            self.metrics.errors.labels("lint").inc()
        for event in events:
            self.metrics.segments.labels(event.rendition).inc()
        if events:
            self.metrics.publish_delay.observe(events[0].publish_delay_ms / 1000)
            self.publish_delays.append(events[0].publish_delay_ms)
        if self.sink is not None:
            self.sink.send(events)

    def status_doc(self) -> dict[str, Any]:
        last = self.publisher.last_publish
        return {"state": self.status.state, "last_exit": self.status.last_exit,
                "launches": self.status.launches, "pids": self.status.pids,
                "ladder": [r.name for r in self.ladder.rungs], "preset": self.ladder.preset,
                "next_msn": self.publisher.timeline.next_msn, "notes": self.status.notes[-5:],
                "last_publish_age_s": None if last is None else round(time.monotonic() - last, 3)}

    def ready(self) -> bool:
        last = self.publisher.last_publish
        return last is not None and time.monotonic() - last < 3 * self.ladder.segment_seconds

    async def run(self, stop: asyncio.Event) -> None:
        from runtime.endpoints import Health, serve

        self.cfg.origin.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.cfg.staging, ignore_errors=True)
        self.publisher.load()
        if not self.bug_file.exists():
            self.bug_file.write_text("stumpcast")
        health = Health.of_registry(self.metrics.registry, self.ready, self.status_doc)
        app = self._build_app(health)
        runner = await serve(app, self.cfg.http_port, self.cfg.http_host)
        side = self._side_tasks(stop)
        try:
            await self._supervise(stop)
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            if self.sink is not None:
                self.sink.close()
            await runner.cleanup()
            self.status.state = "stopped"

    def _side_tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        tasks = []
        if self.cfg.redis_url and self.cfg.source.kind == "synthetic":
            tasks.append(asyncio.create_task(scorebug_loop(
                self.cfg.redis_url, self.cfg.redis_auth, self.cfg.match_id, self.bug_file, stop,
                self.metrics, cluster=self.cfg.redis_cluster)))
        if self.cfg.kafka:
            self.sink = SegmentSink(self.cfg.kafka, self.metrics)
            tasks.append(asyncio.create_task(self._markers(stop)))
        return tasks

    async def _markers(self, stop: asyncio.Event) -> None:
        assert self.cfg.kafka
        entries = self.publisher.timeline.entries
        start_ms = marker_start_ms(round(time.time() * 1000),
                                   self.cfg.window * self.ladder.segment_seconds * 1000,
                                   entries[0].pdt_ms if entries else None)
        feed = MarkerFeed(self.cfg.kafka, self.cfg.match_id, self.metrics, start_ms)
        try:
            while not stop.is_set():
                for note in feed.poll():
                    if self.publisher.markers.add(note) is not None:
                        self.metrics.markers.inc()
                await asyncio.sleep(0.2)
        finally:
            await asyncio.to_thread(feed.close)

    async def _supervise(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            self.status.launches += 1
            launch = self._new_launch()
            began = time.monotonic()
            reason = await launch.run(stop)
            self.status.last_exit = reason
            if reason == "stopped":
                return
            self.metrics.restarts.labels(reason.split(":")[0]).inc()
            if reason == "too_slow" and self._step_down():
                continue
            if launch.next_index > 0 and time.monotonic() - began > 30:
                backoff.reset()
            delay = backoff.next()
            self.status.state = "restarting"
            self.status.notes.append(f"{reason}; restart in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _step_down(self) -> bool:
        step = self.ladder.step_down()
        if step is None:
            return False
        self.ladder, what = step
        self.publisher.set_ladder(self.ladder)
        self.metrics.ladder_steps.inc()
        self.status.notes.append(f"encoder below real time: {what}")
        log.warning("encoder below real time; ladder stepped down", extra={"step": what})
        return True
