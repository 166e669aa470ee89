"""The ABR ladder as data: rungs, their x264 settings, the CODECS string, and degradation steps.

Pure: no I/O. The rungs here are the catalogue; the default ladder (``STUMPCAST_MEDIA_LADDER``)
is 720p/480p/360p at 25 fps, x264 ``ultrafast`` with ``zerolatency``: on 2 cores shared with
Kafka, Cassandra and other engineers' work, 1080p/720p/480p/360p measured 1.6x unpaced but fell
below real time in paced runs under load (the guard dropped 1080p within 30 s); the 720p ladder
measured 2.6x (docs/media.md, Ladder). IDR every segment: Apple HLS Authoring 1.13 asks for an
IDR every 2 s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# x264 presets from fastest to slowest; the speed guard only ever moves left.
PRESETS: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")

# H.264 profile_idc and constraint flags as written in RFC 6381 avc1.PPCCLL.
_PROFILE_HEX = {"baseline": "42e0", "main": "4d40", "high": "6400"}


class LadderError(ValueError):
    """A ladder specification that cannot be encoded; the message names the rung."""


@dataclass(frozen=True, slots=True)
class Rung:
    name: str
    width: int
    height: int
    video_kbps: int
    profile: str = "high"
    level: str = "4.0"

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise LadderError(f"{self.name}: width and height must be even")
        if self.video_kbps < 50:
            raise LadderError(f"{self.name}: video bit rate below 50 kbit/s")
        if self.profile not in _PROFILE_HEX:
            raise LadderError(f"{self.name}: profile must be one of {sorted(_PROFILE_HEX)}")

    @property
    def codecs_video(self) -> str:
        """RFC 6381 ``avc1.PPCCLL``: profile, constraint flags, level x 10 in hex."""
        level = round(float(self.level) * 10)
        return f"avc1.{_PROFILE_HEX[self.profile]}{level:02x}"


@dataclass(frozen=True, slots=True)
class Ladder:
    rungs: tuple[Rung, ...]
    fps: int = 25
    segment_seconds: int = 2
    preset: str = "ultrafast"
    audio_kbps: int = 96
    audio_rate: int = 48000

    def __post_init__(self) -> None:
        if not self.rungs:
            raise LadderError("a ladder needs at least one rung")
        if len({r.name for r in self.rungs}) != len(self.rungs):
            raise LadderError("rung names must be unique")
        if self.preset not in PRESETS:
            raise LadderError(f"preset must be one of {', '.join(PRESETS)}")
        if not 1 <= self.fps <= 60 or self.segment_seconds < 1:
            raise LadderError("fps must be 1..60 and segment_seconds >= 1")

    @property
    def gop_frames(self) -> int:
        return self.fps * self.segment_seconds

    @property
    def codecs_audio(self) -> str:
        return "mp4a.40.2"  # AAC-LC

    def codecs(self, rung: Rung) -> str:
        return f"{rung.codecs_video},{self.codecs_audio}"

    def step_down(self) -> tuple[Ladder, str] | None:
        """One step faster: a faster preset first, then drop the top rung. None at the floor."""
        index = PRESETS.index(self.preset)
        if index > 0:
            faster = PRESETS[index - 1]
            return dataclasses.replace(self, preset=faster), f"preset {self.preset} -> {faster}"
        if len(self.rungs) > 1:
            top = max(self.rungs, key=lambda r: r.width * r.height)
            rest = tuple(r for r in self.rungs if r is not top)
            return dataclasses.replace(self, rungs=rest), f"dropped rung {top.name}"
        return None


DEFAULT_RUNGS: tuple[Rung, ...] = (
    Rung("1080p", 1920, 1080, 4500, "high", "4.0"),
    Rung("720p", 1280, 720, 2500, "high", "3.1"),
    Rung("480p", 854, 480, 1100, "main", "3.0"),
    Rung("360p", 640, 360, 600, "main", "3.0"),
)

_NAMED = {r.name: r for r in DEFAULT_RUNGS} | {
    "540p": Rung("540p", 960, 540, 1600, "main", "3.1"),
    "240p": Rung("240p", 426, 240, 300, "baseline", "3.0"),
}


def parse_rungs(spec: str) -> tuple[Rung, ...]:
    """``"1080p,720p:2000,480p"``: named rungs, optionally with a bit rate in kbit/s."""
    out: list[Rung] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, kbps = item.partition(":")
        if name not in _NAMED:
            raise LadderError(f"{name}: unknown rung; known: {', '.join(sorted(_NAMED))}")
        rung = _NAMED[name]
        if kbps:
            try:
                rung = dataclasses.replace(rung, video_kbps=int(kbps))
            except ValueError:
                raise LadderError(f"{item}: bit rate must be an integer (kbit/s)") from None
        out.append(rung)
    if not out:
        raise LadderError("empty ladder")
    return tuple(out)
