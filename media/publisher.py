"""Publishing one segment set: move segments into the origin, write playlists atomically.

The decisions (PDT, discontinuity, what to write) are pure functions; ``Publisher`` is the thin
shell that does the file operations. Order matters: segments first, then media playlists, then
the master, then the state file, each with write-temp + ``os.replace`` so a reader (or a crash)
only ever sees a whole old file or a whole new one. A playlist that fails the linter is never
written: the previous one stays up and the error is counted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from media.ladder import Ladder
from media.lint import PDT_TOLERANCE_S, Problem, lint_set, lint_steering
from media.markers import Marker, MarkerBook, tags_before
from media.playlist import (
    SegmentEntry,
    Steering,
    Timeline,
    format_pdt,
    render_master,
    render_media,
    steered_master,
)
from schemas.media import SegmentPublished

log = logging.getLogger("stumpcast.media.publisher")

# A PDT jump above the linter's tolerance is signalled as a discontinuity, never left for
# the linter to refuse (which would freeze the playlists).
GAP_TOLERANCE_MS = PDT_TOLERANCE_S * 1000
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True)
class StagedSet:
    """Segment ``index`` of one ffmpeg launch, complete in every rendition."""

    index: int
    anchor_ms: int  # epoch ms of encoder PTS 0 (the launch's measured capture anchor)
    first_pts: float  # seconds, from the reference rendition's first video PES
    end: float  # seconds, segment muxer's end time
    paths: Mapping[str, Path]  # rendition -> staged file
    sizes: Mapping[str, int]
    new_launch: bool  # first segment of this launch


def entry_for(staged: StagedSet, timeline: Timeline) -> SegmentEntry:
    """Capture-anchored timing: PDT = launch anchor + first PTS (a CFR capture timeline)."""
    pdt_ms = staged.anchor_ms + round(staged.first_pts * 1000)
    prev = timeline.entries[-1] if timeline.entries else None
    jump = pdt_ms - prev.end_ms if prev else 0.0
    discontinuity = prev is not None and (staged.new_launch or abs(jump) > GAP_TOLERANCE_MS)
    return SegmentEntry(msn=timeline.next_msn, pdt_ms=pdt_ms,
                        duration=round(max(staged.end - staged.first_pts, 0.001), 6),
                        discontinuity=discontinuity, sizes=dict(staged.sizes))


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Publisher:
    def __init__(self, origin: Path, ladder: Ladder, match_id: str, window: int,
                 steering: Steering | None = None) -> None:
        self.origin = origin
        self.steering = steering
        self.ladder = ladder
        self.markers = MarkerBook(match_id)
        self.timeline = Timeline(target_duration=ladder.segment_seconds, window=window)
        self.ended: set[str] = set()
        self.last_publish: float | None = None

    def load(self) -> None:
        """Resume numbering and the window from the state file, if any."""
        path = self.origin / STATE_FILE
        if not path.exists():
            return
        doc = orjson.loads(path.read_bytes())
        self.timeline = Timeline.from_doc(doc["timeline"], self.timeline.window)
        self.markers.markers = {m["id"]: Marker(**m) for m in doc.get("markers", [])}

    def set_ladder(self, ladder: Ladder) -> None:
        gone = {r.name for r in self.ladder.rungs} - {r.name for r in ladder.rungs}
        self.ended |= gone
        self.ladder = ladder

    def publish(self, staged: StagedSet) -> tuple[list[SegmentPublished], list[Problem]]:
        entry = entry_for(staged, self.timeline)
        for name, src in staged.paths.items():
            folder = self.origin / name
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(src, folder / f"{entry.msn}.ts")
        gone = self.timeline.append(entry)
        problems = self.write_playlists()
        self._save()
        self._expire(gone)
        delay_ms = time.time() * 1000 - entry.end_ms
        self.last_publish = time.monotonic()
        events = [SegmentPublished(self.markers.match_id, name, entry.msn, format_pdt(entry.pdt_ms),
                                   entry.duration, size, round(delay_ms, 1), entry.discontinuity)
                  for name, size in entry.sizes.items()]
        return events, problems

    def render(self) -> tuple[str, dict[str, str]]:
        entries = self.timeline.entries
        if entries:
            self.markers.prune(entries[0].pdt_ms)
        tags = tags_before(self.markers.markers.values(), entries)
        names = [r.name for r in self.ladder.rungs] + sorted(self.ended)
        media = {f"{n}/index.m3u8": render_media(self.timeline, n, tags, ended=n in self.ended)
                 for n in names}
        return render_master(self.timeline, self.ladder), media

    def write_playlists(self) -> list[Problem]:
        master, media = self.render()
        live = {uri: text for uri, text in media.items()
                if uri.split("/")[0] not in self.ended}
        problems = lint_set(master, live)
        if self.steering is not None and not problems:
            master = steered_master(master, self.steering)
            problems = lint_steering(master)
        if problems:
            log.error("playlist failed lint; not published",
                      extra={"problems": [f"{p.rule}: {p.message}" for p in problems]})
            return problems
        for uri, text in media.items():
            atomic_write(self.origin / uri, text.encode())
        atomic_write(self.origin / "master.m3u8", master.encode())
        return []

    def _save(self) -> None:
        doc = {"timeline": self.timeline.to_doc(),
               "markers": [_marker_doc(m) for m in self.markers.markers.values()]}
        atomic_write(self.origin / STATE_FILE, orjson.dumps(doc))

    def _expire(self, gone: list[SegmentEntry]) -> None:
        # bis §6.2.2: a removed segment stays available for its duration plus the playlist's;
        # delete a whole window later.
        for entry in gone:
            old = entry.msn - self.timeline.window
            for name in entry.sizes:
                (self.origin / name / f"{old}.ts").unlink(missing_ok=True)


def _marker_doc(m: Marker) -> dict[str, object]:
    return {"id": m.id, "match_id": m.match_id, "kind": m.kind, "start_ms": m.start_ms,
            "innings": m.innings, "over": m.over, "text": m.text, "retracts": m.retracts}
