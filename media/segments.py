"""What ffmpeg's segment muxer leaves in staging: its CSV list, and MPEG-TS segment files.

Pure functions over bytes and text. The segment muxer appends ``name,start,end`` to its CSV
list only after it has closed the segment file, so a listed segment is complete; a segment that
a crash cut short is never listed and never published.
"""

from __future__ import annotations

from dataclasses import dataclass

TS_PACKET = 188
TS_SYNC = 0x47
PTS_HZ = 90_000


class SegmentError(ValueError):
    """A staged segment that must not be published; the message says why."""


@dataclass(frozen=True, slots=True)
class ListedSegment:
    index: int
    name: str
    start: float
    end: float


def parse_list(text: str) -> list[ListedSegment]:
    """Complete lines of a segment-muxer CSV list (a trailing partial line is ignored)."""
    out: list[ListedSegment] = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        name, start, end = line.strip().rsplit(",", 2)
        stem = name.rsplit("/", 1)[-1].removesuffix(".ts")
        out.append(ListedSegment(int(stem), name, float(start), float(end)))
    return out


def _pes_pts(payload: bytes) -> int | None:
    """PTS of a PES header (ISO/IEC 13818-1 2.4.3.7), or None."""
    if len(payload) < 14 or payload[:3] != b"\x00\x00\x01":
        return None
    if not 0xE0 <= payload[3] <= 0xEF:  # video stream ids only
        return None
    if not payload[7] & 0x80:  # PTS_DTS_flags
        return None
    p = payload[9:14]
    return (((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15
            | p[3] << 7 | p[4] >> 1)


def _payload(packet: bytes) -> bytes | None:
    if not packet[1] & 0x40:  # payload_unit_start_indicator
        return None
    control = (packet[3] >> 4) & 0x3
    if control == 1:
        return packet[4:]
    if control == 3:
        return packet[5 + packet[4]:]
    return None


def check_ts(data: bytes) -> float:
    """Validate an MPEG-TS segment; return its first video PTS in seconds."""
    if not data:
        raise SegmentError("empty segment")
    if len(data) % TS_PACKET:
        raise SegmentError(f"{len(data)} bytes is not a whole number of TS packets")
    first: int | None = None
    for off in range(0, len(data), TS_PACKET):
        packet = data[off:off + TS_PACKET]
        if packet[0] != TS_SYNC:
            raise SegmentError(f"lost TS sync at byte {off}")
        if first is None:
            payload = _payload(packet)
            first = _pes_pts(payload) if payload is not None else None
    if first is None:
        raise SegmentError("no video PES with a PTS")
    return first / PTS_HZ
