"""Ball events as EXT-X-DATERANGE markers: which segment a ball lands in, and the tag text. Pure.

Apple authoring 8.21: metadata SHOULD be in the playlist (EXT-X-DATERANGE) rather than in the
media. A ball is an instant, so ``DURATION=0`` (bis §4.4.5.1). START-DATE is the ball's UTC
instant on the same clock as the PDT timeline, so a player reveals it when ``playingDate``
crosses it. A retraction never edits a published tag (same-ID tags must not change attributes,
bis §4.4.5.1); it adds a second tag of its own class naming the one it voids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from media.playlist import SegmentEntry, format_pdt
from schemas.notifications import BALL_MARKER_KINDS, Kind, Notification

CLASS_BALL = "com.stumpcast.cricket.ball"
CLASS_RETRACTION = "com.stumpcast.cricket.retraction"


@dataclass(frozen=True, slots=True)
class Marker:
    id: str
    match_id: str
    kind: str
    start_ms: int
    innings: int
    over: str
    text: str
    retracts: str | None = None


def marker_from(note: Notification, match_id: str) -> Marker | None:
    """The marker for a notification of this match, or None if it is not a video marker."""
    if note.match_id != match_id:
        return None
    if note.kind not in BALL_MARKER_KINDS and note.kind is not Kind.RETRACTION:
        return None
    start_ms = round(note.instant.timestamp() * 1000)
    return Marker(note.id, note.match_id, str(note.kind), start_ms, note.innings, note.over,
                  note.text, note.retracts)


def _quoted(text: str) -> str:
    # quoted-string: no double quote, CR or LF (RFC 8216 §4.2).
    return '"' + text.replace('"', "'").replace("\r", " ").replace("\n", " ") + '"'


def daterange(marker: Marker) -> str:
    attrs = [f"ID={_quoted(marker.id)}",
             f"CLASS={_quoted(CLASS_RETRACTION if marker.retracts else CLASS_BALL)}",
             f"START-DATE={_quoted(format_pdt(marker.start_ms))}", "DURATION=0",
             f"X-COM-STUMPCAST-KIND={_quoted(marker.kind)}",
             f"X-COM-STUMPCAST-INNINGS={marker.innings}",
             f"X-COM-STUMPCAST-OVER={_quoted(marker.over)}",
             f"X-COM-STUMPCAST-TEXT={_quoted(marker.text)}"]
    if marker.retracts:
        attrs.append(f"X-COM-STUMPCAST-RETRACTS={_quoted(marker.retracts)}")
    return "#EXT-X-DATERANGE:" + ",".join(attrs)


def place(markers: Iterable[Marker], entries: Sequence[SegmentEntry]) -> dict[int, list[Marker]]:
    """msn -> markers to write before that segment.

    A marker goes before the segment whose [PDT, PDT + duration) holds its instant. One that
    fell in a gap (the input stalled, the worker was down) goes before the first segment after
    it: the earliest video there is. One before the window is dropped; one beyond the live edge
    waits for the segment that will hold it.
    """
    out: dict[int, list[Marker]] = {}
    if not entries:
        return out
    start, edge = entries[0].pdt_ms, entries[-1].end_ms
    for marker in sorted(markers, key=lambda m: (m.start_ms, m.id)):
        if marker.start_ms < start or marker.start_ms >= edge:
            continue
        for entry in entries:
            if marker.start_ms < entry.end_ms:
                out.setdefault(entry.msn, []).append(marker)
                break
    return out


def tags_before(markers: Iterable[Marker], entries: Sequence[SegmentEntry]) -> dict[int, list[str]]:
    return {msn: [daterange(m) for m in ms] for msn, ms in place(markers, entries).items()}


class MarkerBook:
    """Markers received so far, by id (a replayed notification is a no-op)."""

    def __init__(self, match_id: str, markers: Mapping[str, Marker] | None = None) -> None:
        self.match_id = match_id
        self.markers: dict[str, Marker] = dict(markers or {})

    def add(self, note: Notification) -> Marker | None:
        marker = marker_from(note, self.match_id)
        if marker is None or marker.id in self.markers:
            return None
        self.markers[marker.id] = marker
        return marker

    def prune(self, before_ms: int) -> None:
        self.markers = {k: m for k, m in self.markers.items() if m.start_ms >= before_ms}
