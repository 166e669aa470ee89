"""The playlist writer: a live timeline of segment sets and the HLS text rendered from it. Pure.

ffmpeg's hls muxer cannot anchor EXT-X-PROGRAM-DATE-TIME, write EXT-X-DATERANGE or measure
BANDWIDTH (media.md §0.1), so the worker owns the playlists. One ``Timeline`` holds every
rendition's segments: the ladder is IDR-aligned, so segment N has the same PDT and duration in
every rendition, and every media playlist carries identical DATERANGE tags (bis §6.2.4).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from media.ladder import Ladder

PLAYLIST_VERSION = 3  # floating-point EXTINF (RFC 8216 §7); nothing here needs more


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    msn: int
    pdt_ms: int  # capture instant of the segment's first frame, UTC epoch ms
    duration: float
    discontinuity: bool
    sizes: Mapping[str, int]  # rendition name -> bytes
    init: str = ""  # LL-HLS (fMP4): the launch tag naming the init section and the URIs

    @property
    def end_ms(self) -> float:
        return self.pdt_ms + self.duration * 1000


@functools.lru_cache(maxsize=8192)  # every playlist re-renders the window's dates
def format_pdt(ms: int | float) -> str:
    """``2026-05-01T14:03:22.480Z``: UTC with ms (bis §4.4.4.6 SHOULD: zone and ms accuracy)."""
    when = dt.datetime.fromtimestamp(round(ms) / 1000, tz=dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(ms) % 1000:03d}Z"


@dataclass
class Timeline:
    """The sliding window of published segment sets, and the numbers that survive restarts."""

    target_duration: int
    window: int
    next_msn: int = 0
    discontinuity_sequence: int = 0
    entries: list[SegmentEntry] = field(default_factory=list)

    def append(self, entry: SegmentEntry) -> list[SegmentEntry]:
        """Add the next segment set; return the entries that left the window."""
        if entry.msn != self.next_msn:
            raise ValueError(f"segment {entry.msn} out of order, expected {self.next_msn}")
        self.entries.append(entry)
        self.next_msn = entry.msn + 1
        gone = self.entries[:-self.window] if len(self.entries) > self.window else []
        self.entries = self.entries[len(gone):]
        # RFC 8216 §4.3.3.3: count the discontinuities that scrolled out of the window.
        self.discontinuity_sequence += sum(1 for e in gone if e.discontinuity)
        return gone

    def to_doc(self) -> dict[str, Any]:
        return {"target_duration": self.target_duration, "window": self.window,
                "next_msn": self.next_msn,
                "discontinuity_sequence": self.discontinuity_sequence,
                # By hand: dataclasses.asdict deep-copies, 88 ms for a 450-segment window.
                "entries": [{"msn": e.msn, "pdt_ms": e.pdt_ms, "duration": e.duration,
                             "discontinuity": e.discontinuity, "sizes": dict(e.sizes),
                             "init": e.init} for e in self.entries]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], window: int) -> Timeline:
        entries = [SegmentEntry(**{**e, "sizes": dict(e["sizes"])}) for e in doc["entries"]]
        return cls(target_duration=int(doc["target_duration"]), window=window,
                   next_msn=int(doc["next_msn"]),
                   discontinuity_sequence=int(doc["discontinuity_sequence"]),
                   entries=entries[-window:])


def segment_uri(msn: int) -> str:
    return f"{msn}.ts"


def rendition_entries(timeline: Timeline, rendition: str) -> list[SegmentEntry]:
    """The contiguous tail of the window that has this rendition (a dropped rung ends)."""
    out: list[SegmentEntry] = []
    for entry in reversed(timeline.entries):
        if rendition not in entry.sizes:
            break
        out.append(entry)
    return out[::-1]


def render_media(timeline: Timeline, rendition: str,
                 tags_before: Mapping[int, Sequence[str]], ended: bool = False) -> str:
    """One media playlist. ``tags_before[msn]``: DATERANGE lines written before segment msn."""
    entries = rendition_entries(timeline, rendition)
    first = entries[0].msn if entries else timeline.next_msn
    # The first listed segment carries no DISCONTINUITY tag; its own (and any earlier in the
    # window) is counted in EXT-X-DISCONTINUITY-SEQUENCE instead (RFC 8216 §4.3.3.3).
    skipped = sum(1 for e in timeline.entries if e.msn <= first and e.discontinuity)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
             f"#EXT-X-TARGETDURATION:{timeline.target_duration}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}",
             f"#EXT-X-DISCONTINUITY-SEQUENCE:{timeline.discontinuity_sequence + skipped}",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    for entry in entries:
        lines.extend(tags_before.get(entry.msn, ()))
        if entry.discontinuity and entry is not entries[0]:
            lines.append("#EXT-X-DISCONTINUITY")
        # PDT on every segment: Apple 8.4 (MUST in live), and it re-anchors after a gap.
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(entry.pdt_ms)}")
        lines.append(f"#EXTINF:{entry.duration:.3f},")
        lines.append(segment_uri(entry.msn))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def peak_and_average(entries: Sequence[SegmentEntry], rendition: str,
                     target_duration: int) -> tuple[int, int]:
    """Measured bit rates in bit/s.

    Peak: the largest rate of any contiguous run of segments lasting 0.5-1.5 x the target
    duration (RFC 8216 §4.3.4.2 "peak segment bit rate"); average: total bits over total time.
    """
    sized = [(e.sizes[rendition], e.duration) for e in entries if rendition in e.sizes]
    if not sized:
        return 0, 0
    peak = 0.0
    for i in range(len(sized)):
        total_bytes, total_dur = 0, 0.0
        for size, dur in sized[i:]:
            total_bytes, total_dur = total_bytes + size, total_dur + dur
            if total_dur >= 0.5 * target_duration:
                break
        if total_dur > 0 and total_dur <= 1.5 * target_duration:
            peak = max(peak, total_bytes * 8 / total_dur)
    all_bytes = sum(s for s, _ in sized)
    all_dur = sum(d for _, d in sized)
    average = all_bytes * 8 / all_dur if all_dur else 0.0
    return math.ceil(max(peak, average)), math.ceil(average)


def render_master(timeline: Timeline, ladder: Ladder) -> str:
    """The multivariant playlist, following Apple's authoring rules.

    Apple 9.11: EXT-X-INDEPENDENT-SEGMENTS (every segment starts with an IDR); 9.1 CODECS;
    9.2 RESOLUTION; 9.14 AVERAGE-BANDWIDTH; 9.15 FRAME-RATE. BANDWIDTH and AVERAGE-BANDWIDTH
    are measured from the published segments (audio included: the segments are muxed A/V).
    """
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{PLAYLIST_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rung in ladder.rungs:
        peak, average = peak_and_average(timeline.entries, rung.name, timeline.target_duration)
        if not peak:
            continue
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
            f'CODECS="{ladder.codecs(rung)}",RESOLUTION={rung.width}x{rung.height},'
            f"FRAME-RATE={ladder.fps:.3f}")
        lines.append(f"{rung.name}/index.m3u8")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Steering:
    """HLS content steering: the steering server and the pathways (CDNs) of the master."""

    server_uri: str
    pathways: tuple[tuple[str, str], ...]  # (pathway id, base URL of that CDN), first = default


def steered_master(master: str, steering: Steering) -> str:
    """The multivariant playlist with one copy of the ladder per pathway (rfc8216bis §4.4.6.6
    and §7, Apple's HLS Content Steering spec).

    Each copy's variants carry ``PATHWAY-ID`` and ``STABLE-VARIANT-ID`` (the rung, the same in
    every pathway, so a player switching CDN keeps its rendition) and absolute URIs on that
    CDN. ``EXT-X-CONTENT-STEERING`` names the steering server and the pathway to start on.
    Pathway clones (v1.3, HOST replacement) cannot express our edges, which differ by port.
    """
    head: list[str] = []
    variants: list[tuple[str, str]] = []
    lines = master.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#EXT-X-STREAM-INF:"):
            variants.append((lines[i], lines[i + 1]))
            i += 2
            continue
        head.append(lines[i])
        i += 1
    first = steering.pathways[0][0]
    head.append(f'#EXT-X-CONTENT-STEERING:SERVER-URI="{steering.server_uri}",'
                f'PATHWAY-ID="{first}"')
    out = list(head)
    for ident, base in steering.pathways:
        for inf, uri in variants:
            rung = uri.split("/", 1)[0]
            out.append(f'{inf},PATHWAY-ID="{ident}",STABLE-VARIANT-ID="{rung}"')
            out.append(f"{base}/hls/{uri}")
    return "\n".join(out) + "\n"


_SERVER_URI = re.compile(r'(#EXT-X-CONTENT-STEERING:SERVER-URI=")([^"]*)(")')


def with_region(master: str, region: str) -> str:
    """The master with ``region`` added to its steering server URI, so the steering server
    knows which region's decision a player follows (the edge caches one copy per region)."""
    def add(m: re.Match[str]) -> str:
        sep = "&" if "?" in m.group(2) else "?"
        return f"{m.group(1)}{m.group(2)}{sep}region={region}{m.group(3)}"

    return _SERVER_URI.sub(add, master, count=1)
