"""ffmpeg argument lists built as data: the synthetic source and the ladder encoder.

Pure: every function returns ``list[str]`` and is snapshot-tested (tests/media/golden/). No
ffmpeg-python: media.md §8.14 (0.2.0's list-valued kwargs, the ``future`` CVE) — a small
builder is clearer.

Timing design (docs/media.md, "PDT anchoring"). ffmpeg only ever sees a clean constant-frame-rate
timeline: the encoder never re-stamps frames with the wall clock (jittery stamps collide on the
encoder's 1/fps grid and made PDT jump). Capture time is a property of the *source*:

- The synthetic source is a camera with its own clock. Frame N is captured at
  ``C0 + N/fps``, where C0 is the generator's wall clock (``RTCSTART``) when it began, and
  ``-re`` paces it so frame N leaves no earlier than that instant. Its PTS carries that epoch
  time exactly (time base ``1/(1000*fps)``: one frame = 1000 ticks, 1 ms = fps ticks), and the
  clock text and the 48-bit barcode are drawn from the PTS, so they burn in the capture instant.
  If the machine is loaded the frames arrive late but keep their capture time (like a genlocked
  camera behind a congested link): lateness is latency, not PDT error.
- The generator prints frame 0's PTS to a small capture note (``metadata=mode=print``); the
  worker reads it and anchors the encoder timeline: PDT = C0 - pts(frame 0) + pts(segment).
- Foreign sources (RTMP, SRT, file) get an ``fps`` filter for a CFR timeline, and the worker
  anchors on arrival: the smallest (wall clock - encoder output time) seen in ``-progress``.

``-muxdelay 0 -muxpreload 0`` keep MPEG-TS PTS equal to the encoder timeline (ffmpeg otherwise
adds 1.4 s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from media.ladder import Ladder, Rung

# The burned-in barcode: 48 bits of the UTC epoch in milliseconds, MSB first, one cell per bit,
# across the top-left of the frame. Cells are width/BAR_CELL_DIV wide (fractional pixels are
# fine: the probe averages each cell) and height/BAR_H_DIV high.
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


def filter_graph(ladder: Ladder, synthetic: bool) -> str:
    """Decode once, split to every rung, scale; audio resampled and split the same way.

    The synthetic source is already CFR at the ladder's rate, so its frames pass untouched (an
    fps filter could only duplicate or drop them). A foreign source gets ``fps`` for a CFR
    timeline and ``aresample=async`` so jittery audio stamps become a continuous track.
    """
    n = len(ladder.rungs)
    fps = "" if synthetic else f"fps={ladder.fps},"
    video = f"[0:v]{fps}split={n}" + "".join(f"[s{i}]" for i in range(n))
    scales = [f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,format=yuv420p[v{i}]"
              for i, r in enumerate(ladder.rungs)]
    resample = f"aresample={ladder.audio_rate}" + ("" if synthetic else ":async=1000")
    audio = f"[0:a]{resample},asplit={n}" + "".join(f"[a{i}]" for i in range(n))
    return ";".join([video, *scales, audio])


def _rung_encode(ladder: Ladder, index: int, rung: Rung) -> list[str]:
    gop = str(ladder.gop_frames)
    seg = str(ladder.segment_seconds)
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
        # The timeline is CFR already: pass it through (no duplicated or dropped frames); the
        # encoder time base is the default 1/fps, on which every frame falls exactly.
        "-fps_mode", "passthrough",
        "-muxdelay", "0", "-muxpreload", "0",
    ]


def rung_args(ladder: Ladder, index: int, rung: Rung, staging: Path) -> list[str]:
    out = staging / rung.name
    return _rung_encode(ladder, index, rung) + [
        "-f", "segment", "-segment_time", str(ladder.segment_seconds),
        "-segment_format", "mpegts",
        "-segment_list", str(out / "list.csv"), "-segment_list_type", "csv",
        str(out / "%d.ts"),
    ]


def part_frames(ladder: Ladder, part_target: float) -> int:
    """Frames per LL-HLS part: whole frames that divide the GOP, closest to ``part_target``
    (so every part of a segment has the same duration and none is below 85% of the target,
    bis §4.4.4.9)."""
    fits = [n for n in range(1, ladder.gop_frames + 1) if ladder.gop_frames % n == 0]
    return min(fits, key=lambda n: abs(n / ladder.fps - part_target))


def ll_rung_args(ladder: Ladder, index: int, rung: Rung, staging: Path,
                 frames_per_part: int) -> list[str]:
    """One growing fragmented MP4 per rung (media.md §3.6): init, then a fragment per part.

    ``frag_duration`` (microseconds for the mp4 muxer) cuts a fragment once it holds a part's
    worth of frames; ``frag_keyframe`` also cuts at every IDR, which falls on a part boundary
    because the part divides the GOP. ``delay_moov`` writes the init once the AAC priming delay
    is known (otherwise the audio track starts at a negative time the moov cannot express).
    ``flush_packets`` hands each fragment to the file at once rather than at 32 KiB.
    """
    micros = round(frames_per_part * 1_000_000 / ladder.fps)
    return _rung_encode(ladder, index, rung) + [
        "-f", "mp4", "-movflags", "+empty_moov+default_base_moof+frag_keyframe+delay_moov",
        "-frag_duration", str(micros), "-flush_packets", "1",
        str(staging / rung.name / "stream.mp4"),
    ]


def encoder_args(ladder: Ladder, source: Source, staging: Path,
                 ffmpeg: str = "ffmpeg", frames_per_part: int | None = None) -> list[str]:
    """One ffmpeg process, every rung: progress on stdout, warnings on stderr.

    ``frames_per_part``: LL-HLS, fragmented MP4 per rung instead of MPEG-TS segments."""
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "warning",
            "-progress", "pipe:1", "-stats_period", "0.5"]
    argv += input_args(source)
    argv += ["-filter_complex", filter_graph(ladder, source.kind == "synthetic")]
    for i, rung in enumerate(ladder.rungs):
        argv += (rung_args(ladder, i, rung, staging) if frames_per_part is None
                 else ll_rung_args(ladder, i, rung, staging, frames_per_part))
    return argv


def capture_tb(fps: int) -> int:
    """Ticks per second of the synthetic source's PTS: one frame = 1000 ticks, 1 ms = fps."""
    return 1000 * fps


def clock_template() -> str:
    """drawtext text (expanded per frame): the frame's capture instant, UTC with milliseconds.

    The PTS *is* the epoch time, so seconds and milliseconds are both truncations of it.
    """
    return "%{pts:gmtime:0}.%{eif:mod(floor(t*1000),1000):d:3} UTC"


def _barcode_crop() -> str:
    """The barcode strip as a fraction of the frame, so any frame size reads back the same way
    (854 px is not a multiple of 80: whole-pixel cells would drift from the probe's grid)."""
    return f"crop=w=iw*{BAR_BITS}/{BAR_CELL_DIV}:h=ih/{BAR_H_DIV}:x=0:y=0"


def _barcode() -> str:
    bit = f"mod(floor(floor(T*1000+0.5)/pow(2,{BAR_BITS - 1}-floor(X*{BAR_BITS}/W))),2)"
    return f"{_barcode_crop()},geq=lum='if({bit},235,16)':cb=128:cr=128"


def _capture_pts(fps: int, audio_rate: int) -> tuple[str, str]:
    """setpts/asetpts: epoch milliseconds at the generator's start, then frame/sample count."""
    video = (f"settb=1/{capture_tb(fps)},"
             f"setpts='floor(RTCSTART/1000)*{fps}+N*1000'")
    audio = f"asettb=1/{audio_rate},asetpts='floor(RTCSTART/1000)*{audio_rate}/1000+N'"
    return video, audio


def synthetic_args(source: Source, fps: int, audio_rate: int, font: Path, clock_file: Path,
                   bug_file: Path, capture_file: Path, realtime: bool = True,
                   ffmpeg: str = "ffmpeg") -> list[str]:
    """The built-in live source: test pattern, 1 kHz tone, burned clock, barcode and score bug.

    Raw video in NUT on stdout, piped into the encoder (no compression cost). Frame 0's PTS
    (its capture instant, see the module doc) goes to ``capture_file`` as soon as it is made.
    """
    w, h = source.width, source.height
    vpts, apts = _capture_pts(fps, audio_rate)
    text = f"fontfile={font}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8"
    note = (f"[c]trim=end_frame=1,metadata=mode=add:key=capture:value=1,"
            f"metadata=mode=print:file={capture_file}:direct=1,nullsink")
    graph = (
        f"[0:v]{vpts},split=3[m][s][c];{note};"
        f"[s]{_barcode()}[bar];[m][bar]overlay=0:0,"
        f"drawtext={text}:textfile={clock_file}:fontsize={h // 20}:x=w/40:y=h/12,"
        f"drawtext={text}:textfile={bug_file}:reload=1:fontsize={h // 16}:x=w/40:y=h-h/6[v];"
        f"[1:a]{apts}[a]"
    )
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    argv += ["-re"] if realtime else []
    argv += ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"]
    argv += ["-re"] if realtime else []
    argv += ["-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate={audio_rate}"]
    argv += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-fps_mode", "passthrough",
             "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-f", "nut", "pipe:1"]
    return argv


def parse_capture_note(text: str, fps: int) -> int | None:
    """Capture instant (epoch ms) of frame 0 from the generator's note, or None if not yet."""
    match = re.search(r"^frame:\s*0\s+pts:(\d+)", text, re.MULTILINE)
    if match is None:
        return None
    return int(match.group(1)) * 1000 // capture_tb(fps)


def barcode_probe_args(segment: Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """Decode a segment's first frame; average each barcode cell to one grey byte on stdout."""
    crop = f"{_barcode_crop()},scale={BAR_BITS}:1:flags=area"
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
