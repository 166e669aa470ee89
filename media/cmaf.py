"""Fragmented MP4 (CMAF) as ffmpeg's mp4 muxer writes it: the init section and the fragments. Pure.

For low-latency HLS the encoder writes one growing fragmented MP4 per rendition
(``-movflags +empty_moov+default_base_moof+frag_keyframe``, ``-frag_duration``; media.md §3.6):
``ftyp`` + ``moov`` (the init section, EXT-X-MAP), then a ``moof`` + ``mdat`` pair per fragment.
Each pair is one partial segment (EXT-X-PART). This module splits the byte stream into boxes and
reads what the playlist needs from a ``moof``: the video track's decode time (``tfdt``), its sample
count and whether the fragment starts with a sync sample (ISO/IEC 14496-12 §8.8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class CmafError(ValueError):
    """Bytes that are not the fragmented MP4 the worker expects; the message says why."""


@dataclass(frozen=True, slots=True)
class InitInfo:
    video_track: int
    timescale: int  # video media timescale (mdhd)
    size: int  # bytes of ftyp + moov


@dataclass(frozen=True, slots=True)
class Fragment:
    decode_time: int  # video tfdt, in the video timescale
    samples: int  # video samples (frames) in the fragment
    duration: int  # video sample durations summed, in the video timescale
    independent: bool  # the first video sample is a sync sample
    size: int  # bytes of moof + mdat


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """(type, offset of the payload, end) of each *complete* box in ``data[start:end]``."""
    end = len(data) if end is None else end
    out: list[tuple[str, int, int]] = []
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        header = 8
        if size == 1:
            if off + 16 > end:
                break
            size, header = struct.unpack_from(">Q", data, off + 8)[0], 16
        if size < header:
            raise CmafError(f"box {kind!r} at {off} has size {size}")
        if off + size > end:
            break
        out.append((kind.decode("latin-1"), off + header, off + size))
        off += size
    return out


def _child(data: bytes, start: int, end: int, kind: str) -> tuple[int, int] | None:
    for k, s, e in boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def parse_init(data: bytes) -> InitInfo:
    """The video track id and timescale from ``ftyp`` + ``moov`` (trak/tkhd, mdia/mdhd, hdlr)."""
    top = {k: (s, e) for k, s, e in boxes(data)}
    if "ftyp" not in top or "moov" not in top:
        raise CmafError("init section needs ftyp and moov")
    s, e = top["moov"]
    for kind, ts, te in boxes(data, s, e):
        if kind != "trak":
            continue
        tkhd, mdia = _child(data, ts, te, "tkhd"), _child(data, ts, te, "mdia")
        if tkhd is None or mdia is None:
            continue
        hdlr, mdhd = _child(data, *mdia, "hdlr"), _child(data, *mdia, "mdhd")
        if hdlr is None or mdhd is None or data[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
            continue
        version = data[tkhd[0]]
        track = struct.unpack_from(">I", data, tkhd[0] + (20 if version == 1 else 12))[0]
        v = data[mdhd[0]]
        timescale = struct.unpack_from(">I", data, mdhd[0] + (20 if v == 1 else 12))[0]
        return InitInfo(video_track=track, timescale=timescale, size=top["moov"][1])
    raise CmafError("no video track in moov")


def _tfhd(data: bytes, s: int) -> tuple[int, int | None, int | None]:
    """track id, default sample duration, default sample flags (ISO 14496-12 §8.8.7)."""
    flags = int.from_bytes(data[s + 1:s + 4], "big")
    track = struct.unpack_from(">I", data, s + 4)[0]
    off = s + 8
    off += 8 if flags & 0x1 else 0  # base-data-offset
    off += 4 if flags & 0x2 else 0  # sample-description-index
    duration = flags_v = None
    if flags & 0x8:
        duration = struct.unpack_from(">I", data, off)[0]
        off += 4
    off += 4 if flags & 0x10 else 0  # default-sample-size
    if flags & 0x20:
        flags_v = struct.unpack_from(">I", data, off)[0]
    return track, duration, flags_v


def _trun(data: bytes, s: int, default_duration: int | None,
          default_flags: int | None) -> tuple[int, int, int | None]:
    """sample count, summed duration, flags of the first sample (§8.8.8)."""
    flags = int.from_bytes(data[s + 1:s + 4], "big")
    count = struct.unpack_from(">I", data, s + 4)[0]
    off = s + 8 + (4 if flags & 0x1 else 0)
    first_flags = None
    if flags & 0x4:
        first_flags = struct.unpack_from(">I", data, off)[0]
        off += 4
    per = [(0x100, "d"), (0x200, "s"), (0x400, "f"), (0x800, "c")]
    fields = [name for bit, name in per if flags & bit]
    total = 0
    for i in range(count):
        for name in fields:
            value = struct.unpack_from(">I", data, off)[0]
            off += 4
            if name == "d":
                total += value
            elif name == "f" and i == 0 and first_flags is None:
                first_flags = value
        if "d" not in fields:
            if default_duration is None:
                raise CmafError("trun without sample durations and no default")
            total += default_duration
    return count, total, first_flags if first_flags is not None else default_flags


def parse_fragment(moof: bytes, init: InitInfo, size: int | None = None) -> Fragment:
    """The video facts of one ``moof`` box (its bytes, header included)."""
    found = boxes(moof)
    if not found or found[0][0] != "moof":
        raise CmafError("fragment does not start with moof")
    _, s, e = found[0]
    for kind, ts, te in boxes(moof, s, e):
        if kind != "traf":
            continue
        tfhd = _child(moof, ts, te, "tfhd")
        tfdt = _child(moof, ts, te, "tfdt")
        trun = _child(moof, ts, te, "trun")
        if tfhd is None or tfdt is None or trun is None:
            raise CmafError("traf needs tfhd, tfdt and trun")
        track, default_duration, default_flags = _tfhd(moof, tfhd[0])
        if track != init.video_track:
            continue
        wide = moof[tfdt[0]] == 1
        decode = struct.unpack_from(">Q" if wide else ">I", moof, tfdt[0] + 4)[0]
        count, total, first = _trun(moof, trun[0], default_duration, default_flags)
        # sample_is_non_sync_sample is bit 16 of the sample flags (§8.8.3.1).
        independent = first is not None and not first & 0x10000
        return Fragment(decode, count, total, independent, size or len(moof))
    raise CmafError("fragment has no video track")


@dataclass
class FragmentReader:
    """Cuts a growing fragmented MP4 file into its init section and whole fragments.

    ``feed`` takes the bytes appended since the last call and returns the init section (once)
    and every fragment (``moof`` + ``mdat`` bytes) now complete; a box cut short stays buffered.
    ``mfra`` (written when the encoder closes) and other boxes are skipped.
    """

    buffer: bytes = b""
    init: bytes | None = None
    _moof: bytes | None = None

    def feed(self, data: bytes) -> tuple[bytes | None, list[bytes]]:
        self.buffer += data
        new_init: bytes | None = None
        out: list[bytes] = []
        consumed = 0
        head: list[bytes] = []
        for kind, s, e in boxes(self.buffer):
            start = s - (16 if struct.unpack_from(">I", self.buffer, consumed)[0] == 1 else 8)
            whole = self.buffer[start:e]
            consumed = e
            if self.init is None and kind in {"ftyp", "moov"}:
                head.append(whole)
                if kind == "moov":
                    self.init = new_init = b"".join(head)
            elif kind == "moof":
                self._moof = whole
            elif kind == "mdat" and self._moof is not None:
                out.append(self._moof + whole)
                self._moof = None
        if self.init is None and head:
            return None, out  # ftyp without moov yet: re-read both next time
        self.buffer = self.buffer[consumed:]
        return new_init, out
