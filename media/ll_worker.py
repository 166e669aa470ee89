"""The media worker in LL-HLS mode: fragmented MP4 from ffmpeg, parts published as they close.

``LLLaunch`` tails the growing fragmented MP4 each rung's encoder writes (``media.cmaf``), waits
until every rung has the same fragment, and hands it to ``LLPublisher`` as one part; the origin
is ``media.ll_origin``. Everything else (supervision, capture anchor, speed guard, markers,
score bug) is the regular worker's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from media import ffmpeg_args as fa
from media.cmaf import CmafError, Fragment, FragmentReader, InitInfo, parse_fragment, parse_init
from media.ll_publisher import LLPublisher, StagedPart
from media.llhls import LLConfig
from media.publisher import Publisher
from media.worker import Launch, MediaWorker

log = logging.getLogger("stumpcast.media.ll_worker")


class LLLaunch(Launch):
    def __init__(self, worker: LLMediaWorker, *args: Any) -> None:
        super().__init__(worker, *args)
        self.ll = worker
        self.tag = format(self.launch_id, "x")
        names = [r.name for r in self.ladder.rungs]
        self.readers = {n: FragmentReader() for n in names}
        self.offsets = dict.fromkeys(names, 0)
        self.infos: dict[str, InitInfo] = {}
        self.inits: dict[str, bytes] = {}
        self.queues: dict[str, deque[tuple[Fragment, bytes]]] = {n: deque() for n in names}
        self.init_written = False

    def _encoder_argv(self, src: fa.Source) -> list[str]:
        return fa.encoder_args(self.ladder, src, self.dir,
                               frames_per_part=self.ll.frames_per_part)

    async def run(self, stop: asyncio.Event) -> str:
        reason = await super().run(stop)
        self.w.published(self.ll.publisher.finish(), [])
        return reason

    def _read(self) -> None:
        for name, reader in self.readers.items():
            path = self.dir / name / "stream.mp4"
            try:
                with path.open("rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
            except FileNotFoundError:
                continue
            self.offsets[name] += len(data)
            init, fragments = reader.feed(data)
            if init is not None:
                self.infos[name], self.inits[name] = parse_init(init), init
            for blob in fragments:
                self.queues[name].append((parse_fragment(blob, self.infos[name]), blob))

    def _publish_ready(self) -> None:
        if self.failure is not None:
            return
        try:
            self._read()
        except CmafError as exc:
            # The stream cannot be resynchronised: end the launch (the next one starts afresh,
            # after a DISCONTINUITY) rather than retry the same bytes.
            self.w.metrics.errors.labels("bad_segment").inc()
            log.error("fragmented MP4 not readable", extra={"error": str(exc)})
            self.failure = "bad_fragment"
            return
        if len(self.inits) < len(self.readers):
            return
        if not self.init_written:
            self.ll.publisher.write_init(self.tag, self.inits)
            self.init_written = True
        while all(self.queues.values()):
            ref = self.ladder.rungs[0].name
            frag = self.queues[ref][0][0]
            scale = self.infos[ref].timescale
            anchor = self._anchor(frag.decode_time / scale)
            if anchor is None:
                return  # no capture anchor yet
            data = {n: q.popleft()[1] for n, q in self.queues.items()}
            part = StagedPart(self.tag, anchor + round(frag.decode_time * 1000 / scale),
                              frag.duration / scale, frag.independent, data,
                              new_launch=self.next_index == 0)
            self.next_index += 1
            self.w.published(*self.ll.publisher.publish_part(part))


class LLMediaWorker(MediaWorker):
    publisher: LLPublisher

    @property
    def frames_per_part(self) -> int:
        return fa.part_frames(self.ladder, self.cfg.part_target)

    @property
    def ll_config(self) -> LLConfig:
        return LLConfig(self.ladder.segment_seconds, self.frames_per_part / self.ladder.fps)

    def _make_publisher(self) -> Publisher:
        cfg = self.cfg
        return LLPublisher(cfg.origin, cfg.ladder, cfg.match_id, cfg.window, cfg.steering,
                           self.ll_config)

    def _new_launch(self) -> Launch:
        return LLLaunch(self, self.ladder)

    def _build_app(self, health: Any) -> Any:
        from media.ll_origin import LiveOrigin
        from media.origin import build_app

        live = LiveOrigin(self.publisher, self.cfg.max_blocked,
                          on_reject=lambda status: self.metrics.ll_refused.labels(status).inc())
        self.metrics.ll_blocked.set_function(lambda: live.blocked)
        return build_app(self.cfg.origin, self.ladder.segment_seconds, health, live)
