"""Publishing LL-HLS: parts as they come, whole segments when the next one starts, playlists.

The shell around ``media.llhls`` (pure). Same order and atomicity as ``media.publisher``: the
part (or segment) file first, then the media playlists, then the master, then the state file;
a playlist set that fails the linter is not written. The segment file is the byte
concatenation of its parts (a CMAF segment is its chunks back to back). Numbering and the
window live in the same state file as regular HLS, so they survive a restart; the parts of an
unfinished segment do not (the next launch starts that MSN afresh, with its own URIs).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from media.ladder import Ladder
from media.lint import Problem
from media.llhls import (
    LLConfig,
    PartBook,
    PartEntry,
    Report,
    init_uri,
    part_uri,
    render_ll_media,
    segment_uri,
)
from media.markers import tags_before
from media.playlist import SegmentEntry, Steering, format_pdt, render_master
from media.publisher import GAP_TOLERANCE_MS, Publisher, atomic_write
from schemas.media import SegmentPublished


@dataclass(frozen=True, slots=True)
class StagedPart:
    """One fragment of every rendition, cut on the same frames."""

    tag: str  # the launch
    pdt_ms: int  # capture instant of its first frame
    duration: float
    independent: bool
    data: Mapping[str, bytes]  # rendition -> moof + mdat
    new_launch: bool  # first part of this launch


class LLPublisher(Publisher):
    def __init__(self, origin: Path, ladder: Ladder, match_id: str, window: int,
                 steering: Steering | None, cfg: LLConfig) -> None:
        super().__init__(origin, ladder, match_id, window, steering)
        self.cfg = cfg
        self.book = PartBook()
        self.version = 0
        self.on_change: Callable[[], None] = lambda: None
        self._open: dict[str, list[bytes]] = {}
        self._open_launch_first = False
        self._texts: dict[tuple[str, bool], tuple[int, str]] = {}
        # ms from a part's last captured instant to its playlist (bounded: the bench reads it)
        self.part_delays: deque[float] = deque(maxlen=20_000)

    def load(self) -> None:
        super().load()
        self.book = PartBook(open_msn=self.timeline.next_msn)

    def write_init(self, tag: str, inits: Mapping[str, bytes]) -> None:
        for name, data in inits.items():
            (self.origin / name).mkdir(parents=True, exist_ok=True)
            atomic_write(self.origin / name / init_uri(tag), data)

    def publish_part(self, part: StagedPart) -> tuple[list[SegmentPublished], list[Problem]]:
        events: list[SegmentPublished] = []
        if self.book.open_parts() and (part.independent or part.tag != self.book.open_tag):
            events = self._close_segment()
        book = self.book
        if not book.open_parts():
            book.open_pdt_ms, book.open_tag = part.pdt_ms, part.tag
            self._open_launch_first = part.new_launch
        entry = PartEntry(book.open_msn, len(book.open_parts()), round(part.duration, 6),
                          part.independent, {n: len(d) for n, d in part.data.items()})
        for name, data in part.data.items():
            (self.origin / name).mkdir(parents=True, exist_ok=True)
            atomic_write(self.origin / name / part_uri(entry.msn, entry.index, part.tag), data)
            self._open.setdefault(name, []).append(data)
        book.add(entry)
        problems = self._changed()
        self.part_delays.append(time.time() * 1000 - part.pdt_ms - part.duration * 1000)
        return events, problems

    def finish(self) -> list[SegmentPublished]:
        """The launch ended: its open segment is as long as it will get."""
        if not self.book.open_parts():
            self.book.open_tag = ""
            return []
        events = self._close_segment()
        self.book.open_tag = ""  # no preload hint for a launch that will write no more
        self._changed()
        return events

    def _close_segment(self) -> list[SegmentPublished]:
        book, prev = self.book, (self.timeline.entries[-1] if self.timeline.entries else None)
        parts = book.open_parts()
        assert book.open_pdt_ms is not None
        jump = book.open_pdt_ms - prev.end_ms if prev else 0.0
        fresh = prev is not None and (self._open_launch_first or prev.init != book.open_tag)
        entry = SegmentEntry(
            msn=book.open_msn, pdt_ms=book.open_pdt_ms,
            duration=round(sum(p.duration for p in parts), 6),
            discontinuity=fresh or (prev is not None and abs(jump) > GAP_TOLERANCE_MS),
            sizes={n: sum(len(b) for b in blobs) for n, blobs in self._open.items()},
            init=book.open_tag)
        for name, blobs in self._open.items():
            atomic_write(self.origin / name / segment_uri(entry.msn, entry.init), b"".join(blobs))
        self._open = {}
        gone = self.timeline.append(entry)
        # Parts leave the playlist before they are 3 target durations from its end (bis §6.2.2):
        # the last two whole segments and the open one keep theirs.
        book.close(keep_from_msn=entry.msn - 1, next_msn=self.timeline.next_msn)
        self._save()
        self._expire_ll(gone, entry.msn)
        delay_ms = time.time() * 1000 - entry.end_ms
        return [SegmentPublished(self.markers.match_id, name, entry.msn,
                                 format_pdt(entry.pdt_ms), entry.duration, size,
                                 round(delay_ms, 1), entry.discontinuity)
                for name, size in entry.sizes.items()]

    def _changed(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.timeline.entries:  # no playlist (and not ready) before one whole segment
            problems = self.write_playlists()
            self.last_publish = time.monotonic()
        self.version += 1
        self.on_change()
        return problems

    def render(self) -> tuple[str, dict[str, str]]:
        master = render_master(self.timeline, self.ladder)
        return master, {f"{n}/index.m3u8": self.render_one(n, skip=False) for n in self._names()}

    def _names(self) -> list[str]:
        return [r.name for r in self.ladder.rungs] + sorted(self.ended)

    def render_one(self, rendition: str, skip: bool) -> str:
        entries = self.timeline.entries
        if entries:
            self.markers.prune(entries[0].pdt_ms)
        open_entry = self.book.open_entry()
        tags = tags_before(self.markers.markers.values(),
                           entries + ([open_entry] if open_entry else []))
        msn, part = self.book.newest(self.timeline)
        reports = [Report(f"../{n}/index.m3u8", msn, part)
                   for n in (r.name for r in self.ladder.rungs) if n != rendition]
        return render_ll_media(self.timeline, self.book, rendition, self.cfg, tags, reports,
                               skip=skip, ended=rendition in self.ended)

    def playlist(self, rendition: str, skip: bool) -> str | None:
        """The current playlist text (rendered once per version), or None if unknown."""
        if rendition not in self._names() or not self.timeline.entries:
            return None
        cached = self._texts.get((rendition, skip))
        if cached is None or cached[0] != self.version:
            cached = (self.version, self.render_one(rendition, skip))
            self._texts[(rendition, skip)] = cached
        return cached[1]

    def _expire_ll(self, gone: list[SegmentEntry], newest: int) -> None:
        # A removed segment stays downloadable a whole window more (as for regular HLS); a part
        # stays 3 target durations after leaving the playlist (bis §6.2.2): drop parts of the
        # segment 6 segments back.
        for entry in gone:
            old = entry.msn - self.timeline.window
            for name in entry.sizes:
                for path in (self.origin / name).glob(f"{old}-*.m4s"):
                    path.unlink(missing_ok=True)
        stale = newest - 6
        if stale >= 0:
            for name in self._names():
                for path in (self.origin / name).glob(f"{stale}.*-*.m4s"):
                    path.unlink(missing_ok=True)
