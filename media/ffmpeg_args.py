"""ffmpeg argument lists built as data: the synthetic source and the ladder encoder.

Pure: every function returns ``list[str]`` and is snapshot-tested (tests/media/golden/). No
ffmpeg-python: media.md §8.14 (0.2.0's list-valued kwargs, the ``future`` CVE) — a small
builder is clearer.

Timing design. Every frame's PTS is set, inside the encoder's filter graph, to the wall clock at
which it entered the worker, relative to an anchor ``t0_ms`` the worker chose at launch:
``setpts=(RTCTIME - t0_us)/(TB*1e6)``. A segment's first PTS is then its capture time, so the
playlist writer's EXT-X-PROGRAM-DATE-TIME = t0 + first PTS already excludes the encoder delay,
and an input stall shows up as a PTS jump equal to the real gap. ``-muxdelay 0 -muxpreload 0``
keep MPEG-TS PTS equal to that timeline (ffmpeg otherwise adds 1.4 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from media.ladder import Ladder, Rung

# The burned-in barcode: 48 bits of the UTC epoch in milliseconds, MSB first, one cell per bit,
# across the top-left of the frame. Cells are WIDTH/BAR_CELL_DIV wide and HEIGHT/BAR_H_DIV high.
BAR_BITS = 48
BAR_CELL_DIV = 80
BAR_H_DIV = 45


@dataclass(frozen=True, slots=True)
class Source:
    """Where the live feed comes from. ``kind``: synthetic, rtmp, srt or file."""

    kind: str
    url: str = ""
    width: int = 1920
    height: int = 1080

    def __post_init__(self) -> None:
        if self.kind not in {"synthetic", "rtmp", "srt", "file"}:
            raise ValueError(f"unknown source kind {self.kind!r}")
        if self.kind != "synthetic" and not self.url:
            raise ValueError(f"a {self.kind} source needs a URL or path")


def rtmp_listen_url(port: int, key: str = "live/stream") -> str:
    return f"rtmp://127.0.0.1:{port}/{key}"


def srt_listen_url(port: int) -> str:
    return f"srt://127.0.0.1:{port}?mode=listener&latency=120000"


def input_args(source: Source) -> list[str]:
    if source.kind == "synthetic":
        return ["-f", "nut", "-i", "pipe:0"]
    if source.kind == "rtmp":
        return ["-listen", "1", "-i", source.url]
    if source.kind == "srt":
        return ["-i", source.url]
    return ["-re", "-stream_loop", "-1", "-i", source.url]


def _wallclock_pts(t0_ms: int) -> str:
    return f"setpts='(RTCTIME-{t0_ms * 1000})/(TB*1000000)'"


def filter_graph(ladder: Ladder, t0_ms: int, resample_fps: bool = True) -> str:
    """Decode once, stamp capture time, split to every rung; audio stamped the same way.

    The synthetic source already runs at the ladder's rate with wall-clock timestamps; an fps
    filter there would duplicate frames across any stall of the generator (stale pictures with
    fresh stamps), so it is only used for foreign sources.
    """
    n = len(ladder.rungs)
    fps = f"fps={ladder.fps}," if resample_fps else ""
    video = (f"[0:v]{fps}settb=1/90000,{_wallclock_pts(t0_ms)},"
             f"split={n}" + "".join(f"[s{i}]" for i in range(n)))
    scales = [f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,format=yuv420p[v{i}]"
              for i, r in enumerate(ladder.rungs)]
    # aresample async pads/trims so jittery arrival stamps become a continuous audio track.
    audio = (f"[0:a]aresample={ladder.audio_rate},asettb=1/{ladder.audio_rate},"
             f"{_wallclock_pts(t0_ms).replace('setpts', 'asetpts')},aresample=async=1000,"
             f"asplit={n}" + "".join(f"[a{i}]" for i in range(n)))
    return ";".join([video, *scales, audio])


def rung_args(ladder: Ladder, index: int, rung: Rung, staging: Path) -> list[str]:
    gop = str(ladder.gop_frames)
    seg = str(ladder.segment_seconds)
    out = staging / rung.name
    return [
        "-map", f"[v{index}]", "-map", f"[a{index}]",
        "-c:v", "libx264", "-preset", ladder.preset, "-tune", "zerolatency",
        "-profile:v", rung.profile, "-level:v", rung.level,
        "-b:v", f"{rung.video_kbps}k", "-maxrate", f"{rung.video_kbps * 11 // 10}k",
        "-bufsize", f"{rung.video_kbps}k",
        # Fixed GOP, no scene-cut keyframes, and a forced IDR on every segment boundary: the
        # same frames reach every rung, so keyframes (and cuts) align across the ladder.
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-bf", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{seg})",
        "-c:a", "aac", "-b:a", f"{ladder.audio_kbps}k", "-ac", "2",
        # Keep the capture timestamps as they are: no CFR re-timing, and an encoder time base
        # of the filter's 1/90000 (x264 would otherwise round them to 1/fps, colliding frames).
        "-fps_mode", "passthrough", "-enc_time_base:v", "-1",
        "-muxdelay", "0", "-muxpreload", "0",
        "-f", "segment", "-segment_time", seg, "-segment_format", "mpegts",
        "-segment_list", str(out / "list.csv"), "-segment_list_type", "csv",
        str(out / "%d.ts"),
    ]


def encoder_args(ladder: Ladder, source: Source, staging: Path, t0_ms: int,
                 ffmpeg: str = "ffmpeg") -> list[str]:
    """One ffmpeg process, every rung: progress on stdout, warnings on stderr."""
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "warning",
            "-progress", "pipe:1", "-stats_period", "0.5"]
    argv += input_args(source)
    argv += ["-filter_complex", filter_graph(ladder, t0_ms, source.kind != "synthetic")]
    for i, rung in enumerate(ladder.rungs):
        argv += rung_args(ladder, i, rung, staging)
    return argv


def clock_template(t0_ms: int) -> str:
    """drawtext text (expanded per frame): UTC wall clock with milliseconds."""
    seconds = f"{t0_ms // 1000}.{t0_ms % 1000:03d}"
    return (f"%{{pts:gmtime:{seconds}}}.%{{eif:mod(t*1000+{t0_ms % 1000}+0.5,1000):d:3}} UTC")


def _barcode(width: int, height: int, t0_ms: int) -> str:
    cell, bar_h = width // BAR_CELL_DIV, height // BAR_H_DIV
    bit = (f"mod(floor(({t0_ms}+T*1000+0.5)/pow(2,{BAR_BITS - 1}-floor(X/{cell}))),2)")
    return (f"crop={cell * BAR_BITS}:{bar_h}:0:0,"
            f"geq=lum='if({bit},235,16)':cb=128:cr=128")


def synthetic_args(source: Source, fps: int, audio_rate: int, t0_ms: int, font: Path,
                   clock_file: Path, bug_file: Path, realtime: bool = True,
                   ffmpeg: str = "ffmpeg") -> list[str]:
    """The built-in live source: test pattern, 1 kHz tone, burned clock, barcode and score bug.

    Raw video in NUT on stdout, piped into the encoder (no compression cost). Frame PTS is the
    generator's wall clock (``RTCTIME``), so the barcode is the instant the frame was made.
    """
    w, h = source.width, source.height
    # Unpaced (benchmarks): frame-count timestamps, so the encoder's fps filter keeps them all.
    pts = f"floor(RTCTIME/1000)-{t0_ms}" if realtime else f"N*1000/{fps}"
    text = f"fontfile={font}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8"
    graph = (
        f"[0:v]settb=1/1000,setpts='{pts}',split[m][s];"
        f"[s]{_barcode(w, h, t0_ms)}[bar];[m][bar]overlay=0:0,"
        f"drawtext={text}:textfile={clock_file}:fontsize={h // 20}:x=w/40:y=h/12,"
        f"drawtext={text}:textfile={bug_file}:reload=1:fontsize={h // 16}:x=w/40:y=h-h/6[v]"
    )
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    argv += ["-re"] if realtime else []
    argv += ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"]
    argv += ["-re"] if realtime else []
    argv += ["-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate={audio_rate}"]
    argv += ["-filter_complex", graph, "-map", "[v]", "-map", "1:a",
             "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-f", "nut", "pipe:1"]
    return argv


def barcode_probe_args(segment: Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """Decode a segment's first frame; average each barcode cell to one grey byte on stdout."""
    crop = (f"crop=w=iw*{BAR_BITS}/{BAR_CELL_DIV}:h=ih/{BAR_H_DIV}:x=0:y=0,"
            f"scale={BAR_BITS}:1:flags=area")
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(segment),
            "-frames:v", "1", "-vf", crop, "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]


def decode_barcode(cells: bytes) -> int:
    """The epoch milliseconds written by the synthetic source, from ``BAR_BITS`` grey bytes."""
    if len(cells) != BAR_BITS:
        raise ValueError(f"expected {BAR_BITS} cells, got {len(cells)}")
    value = 0
    for cell in cells:
        value = (value << 1) | (1 if cell > 128 else 0)
    return value
