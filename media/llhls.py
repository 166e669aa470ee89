"""Low-Latency HLS: partial segments, the LL media playlist and blocking-reload decisions. Pure.

ffmpeg's hls muxer writes no EXT-X-PART (media.md §0.1), so the encoder writes fragmented MP4
(``media.cmaf``) and this module turns its fragments into the playlist of draft-pantos-hls-
rfc8216bis ("bis") §4.4.3.7-8, §4.4.4.9, §4.4.5.2-4 and §6.2.5. One ``PartBook`` holds every
rendition's parts: the ladder is IDR-aligned and the fragments are cut on the same frames, so
part (msn, i) has the same duration everywhere (like ``playlist.Timeline`` for segments).

The playlist is a regular HLS playlist plus tags a player without LL-HLS ignores (bis §4.1:
unknown tags are ignored), so the same text serves both kinds of player.

URIs carry the launch tag (``SegmentEntry.init``): after a restart the next launch re-uses the
next MSN, and a part of the dead launch's unfinished segment cached at an edge (immutable, 14
days) must never be mistaken for the new launch's part of the same number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from media.playlist import SegmentEntry, Timeline, format_pdt, rendition_entries

LL_VERSION = 9  # EXT-X-SKIP needs 9 (bis §8); EXT-X-MAP in a media playlist needs 6


@dataclass(frozen=True, slots=True)
class LLConfig:
    target_duration: int
    part_target: float

    def __post_init__(self) -> None:
        if not 0.1 <= self.part_target <= self.target_duration:
            raise ValueError("part target must be 0.1 s .. the target duration")

    @property
    def part_hold_back(self) -> float:
        # bis §4.4.3.8: MUST be >= 2 x PART-TARGET, SHOULD be >= 3 x (Apple 14.3: MUST). One
        # part more than that: on 2 shared cores a part is sometimes published a part late,
        # and hls.js plays PART-HOLD-BACK behind the edge, so this is the player's cushion
        # (3 parts stalled 3 times in 2 min at load average 16-27; 0.4 s more latency).
        return round(4 * self.part_target, 3)

    @property
    def can_skip_until(self) -> float:
        return 6.0 * self.target_duration  # bis §4.4.3.8: MUST be >= 6 x target duration

    @property
    def parts_per_segment(self) -> int:
        return max(1, round(self.target_duration / self.part_target))

    @property
    def advance_part_limit(self) -> float:
        # bis §6.2.5.2: 3 / PART-TARGET when PART-TARGET < 1 s, else 3.
        return 3 / self.part_target if self.part_target < 1 else 3.0


def init_uri(tag: str) -> str:
    return f"init-{tag}.mp4"


def segment_uri(msn: int, tag: str) -> str:
    return f"{msn}-{tag}.m4s"


def part_uri(msn: int, index: int, tag: str) -> str:
    return f"{msn}.{index}-{tag}.m4s"


@dataclass(frozen=True, slots=True)
class PartEntry:
    msn: int
    index: int
    duration: float
    independent: bool
    sizes: Mapping[str, int]


@dataclass
class PartBook:
    """Parts of the open (growing) segment and of the last few complete ones.

    ``open_msn`` is the segment the next part belongs to; ``open_pdt_ms`` the capture instant of
    its first frame once its first part exists. Parts of complete segments stay listed for 3
    target durations (bis §6.2.2) and are then forgotten.
    """

    open_msn: int = 0
    open_pdt_ms: int | None = None
    open_tag: str = ""
    parts: dict[int, list[PartEntry]] = field(default_factory=dict)

    def open_parts(self) -> list[PartEntry]:
        return self.parts.get(self.open_msn, [])

    def add(self, part: PartEntry) -> None:
        if part.msn != self.open_msn or part.index != len(self.open_parts()):
            raise ValueError(f"part {part.msn}.{part.index} out of order")
        self.parts.setdefault(part.msn, []).append(part)

    def close(self, keep_from_msn: int, next_msn: int) -> None:
        """The open segment became a whole one; drop parts of segments before ``keep_from_msn``."""
        self.parts = {m: p for m, p in self.parts.items() if m >= keep_from_msn}
        self.open_msn, self.open_pdt_ms = next_msn, None

    def newest(self, timeline: Timeline) -> tuple[int, int]:
        """(msn, part index) of the newest part; (-1, -1) before the first one."""
        if self.open_parts():
            return self.open_msn, len(self.open_parts()) - 1
        last = self.parts.get(self.open_msn - 1)
        if last:
            return self.open_msn - 1, len(last) - 1
        return (timeline.next_msn - 1, 0) if timeline.next_msn else (-1, -1)

    def open_entry(self) -> SegmentEntry | None:
        """The open segment as an entry (for placing markers up to the live edge)."""
        parts = self.open_parts()
        if not parts or self.open_pdt_ms is None:
            return None
        return SegmentEntry(self.open_msn, self.open_pdt_ms, sum(p.duration for p in parts),
                            False, dict(parts[0].sizes), self.open_tag)


def _server_control(cfg: LLConfig) -> str:
    return (f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={cfg.can_skip_until:.1f},"
            f"PART-HOLD-BACK={cfg.part_hold_back:.3f}")


def _part_lines(parts: Sequence[PartEntry], tag: str) -> list[str]:
    return [f"#EXT-X-PART:DURATION={p.duration:.5f},URI=\"{part_uri(p.msn, p.index, tag)}\""
            + (",INDEPENDENT=YES" if p.independent else "") for p in parts]


def _skipped(entries: Sequence[SegmentEntry], cfg: LLConfig) -> int:
    """Segments a delta update may replace: those wholly before the skip boundary, which lies
    CAN-SKIP-UNTIL seconds before the end of the playlist (bis §6.2.5.1)."""
    total = sum(e.duration for e in entries)
    elapsed, count = 0.0, 0
    for entry in entries:
        elapsed += entry.duration
        if total - elapsed < cfg.can_skip_until:
            break
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class Report:
    uri: str  # relative to the playlist, e.g. ../480p/index.m3u8
    last_msn: int
    last_part: int


def render_ll_media(timeline: Timeline, book: PartBook, rendition: str, cfg: LLConfig,
                    tags_before: Mapping[int, Sequence[str]], reports: Sequence[Report] = (),
                    skip: bool = False, ended: bool = False) -> str:
    """One LL-HLS media playlist (a delta update when ``skip``)."""
    entries = rendition_entries(timeline, rendition)
    first = entries[0].msn if entries else timeline.next_msn
    skipped = sum(1 for e in timeline.entries if e.msn <= first and e.discontinuity)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{LL_VERSION}",
             f"#EXT-X-TARGETDURATION:{timeline.target_duration}"]
    if not ended:
        lines += [_server_control(cfg), f"#EXT-X-PART-INF:PART-TARGET={cfg.part_target:.5f}"]
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{first}",
              f"#EXT-X-DISCONTINUITY-SEQUENCE:{timeline.discontinuity_sequence + skipped}",
              "#EXT-X-INDEPENDENT-SEGMENTS"]
    n_skip = _skipped(entries, cfg) if skip and not ended else 0
    if n_skip:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={n_skip}")
        # _HLS_skip=YES skips segments, never DATERANGEs (only v2 may, bis §6.2.5.1).
        for entry in entries[:n_skip]:
            lines.extend(tags_before.get(entry.msn, ()))
    tag = None
    for i, entry in enumerate(entries[n_skip:]):
        lines.extend(tags_before.get(entry.msn, ()))
        if entry.discontinuity and i + n_skip > 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if entry.init != tag:
            tag = entry.init
            lines.append(f'#EXT-X-MAP:URI="{init_uri(tag)}"')
        # PDT before the segment's first EXT-X-PART (bis §4.4.4.9) and on every segment.
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(entry.pdt_ms)}")
        if not ended:
            lines.extend(_part_lines(book.parts.get(entry.msn, ()), entry.init))
        lines += [f"#EXTINF:{entry.duration:.5f},", segment_uri(entry.msn, entry.init)]
    if ended:
        return "\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n"
    lines += _open_lines(book, tags_before, entries, tag)
    for report in reports:
        lines.append(f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn},'
                     f"LAST-PART={report.last_part}")
    return "\n".join(lines) + "\n"


def _open_lines(book: PartBook, tags_before: Mapping[int, Sequence[str]],
                entries: Sequence[SegmentEntry], tag: str | None) -> list[str]:
    lines: list[str] = []
    parts = book.open_parts()
    if parts and book.open_pdt_ms is not None:
        lines.extend(tags_before.get(book.open_msn, ()))
        if not entries or entries[-1].init != book.open_tag:
            if entries:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="{init_uri(book.open_tag)}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(book.open_pdt_ms)}")
        lines.extend(_part_lines(parts, book.open_tag))
    if book.open_tag and (parts or tag == book.open_tag):
        hint = part_uri(book.open_msn, len(parts), book.open_tag)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    return lines


# --- blocking playlist reload (bis §6.2.5.2) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


class BadDirective(ValueError):
    """A playlist request the origin answers with 400; the message says why."""


def parse_directives(query: Mapping[str, str]) -> Directives:
    def number(name: str) -> int | None:
        raw = query.get(name)
        if raw is None:
            return None
        if not raw.isdigit() or len(raw) > 12:
            raise BadDirective(f"{name} must be a non-negative integer")
        return int(raw)

    msn, part = number("_HLS_msn"), number("_HLS_part")
    if part is not None and msn is None:
        raise BadDirective("_HLS_part without _HLS_msn")  # bis §6.2.5.2: MUST be 400
    skip = query.get("_HLS_skip")
    if skip not in (None, "YES", "v2"):
        raise BadDirective("_HLS_skip must be YES or v2")
    return Directives(msn, part, skip is not None)


def ready(d: Directives, timeline: Timeline, book: PartBook) -> bool:
    """Whether the playlist now holds what a blocking request waits for."""
    if d.msn is None:
        return True
    if d.part is None:
        return timeline.next_msn - 1 >= d.msn  # a whole segment M or later
    msn, part = d.msn, d.part
    done = book.parts.get(msn)
    if msn < timeline.next_msn and (done is None or part >= len(done)):
        msn, part = msn + 1, 0  # beyond the last part of a whole segment: part 0 of the next
    newest = book.newest(timeline)
    return (msn, part) <= newest


def check_reachable(d: Directives, timeline: Timeline, book: PartBook, cfg: LLConfig) -> None:
    """Raise BadDirective for requests too far ahead to wait for (bis §6.2.5.2 SHOULD: 400)."""
    if d.msn is None:
        return
    last = max(book.open_msn, timeline.next_msn - 1)
    if d.msn > last + 2:
        raise BadDirective(f"_HLS_msn {d.msn} is more than 2 beyond the last MSN {last}")
    if d.part is not None:
        n_msn, n_part = book.newest(timeline)
        ahead = (d.msn - n_msn) * cfg.parts_per_segment + d.part - n_part
        if ahead > cfg.advance_part_limit:
            raise BadDirective(f"_HLS_part {d.msn}.{d.part} is beyond the advance part limit")
