"""The media worker in LL-HLS mode with real ffmpeg: parts, blocking reload, delta updates,
bounded held requests, ffmpeg playing the LL playlists, PDT, and numbering across a restart.

One worker run (~45 s) checks everything in order, so the suite pays for one start-up.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import m3u8
import pytest

from media import ffmpeg_args as fa
from media.lint import lint_media
from tests.media.conftest import PublishedWatch, WorkerProc

pytestmark = [pytest.mark.media, pytest.mark.slow]

REPORT = re.compile(r"#EXT-X-RENDITION-REPORT:.*LAST-MSN=(\d+),LAST-PART=(\d+)")
LL_ENV = {"STUMPCAST_MEDIA_HLS": "low-latency", "STUMPCAST_MEDIA_LL_MAX_BLOCKED": "2"}


def newest(w: WorkerProc) -> tuple[int, int]:
    status, _, body = w.get("/hls/360p/index.m3u8")
    assert status == 200
    match = REPORT.search(body.decode())
    assert match is not None, body.decode()
    return int(match[1]), int(match[2])


def next_part(msn: int, part: int) -> tuple[int, int]:
    return (msn + 1, 0) if part == 4 else (msn, part + 1)  # 5 parts of 0.4 s per 2 s segment


def get_lint(w: WorkerProc, query: str) -> tuple[int, str, float]:
    began = time.monotonic()
    status, _, body = w.get(f"/hls/360p/index.m3u8?{query}")
    text = body.decode()
    if status == 200:
        assert lint_media(text) == [], text
    return status, text, time.monotonic() - began


def check_blocking(w: WorkerProc) -> None:
    msn, part = next_part(*newest(w))
    status, text, waited = get_lint(w, f"_HLS_msn={msn}&_HLS_part={part}")
    assert status == 200 and f'URI="{msn}.{part}-' in text
    assert waited > 0.05  # it was held until the part existed, not answered at once
    assert w.get(f"/hls/360p/index.m3u8?_HLS_msn={msn + 3}")[0] == 400
    assert w.get("/hls/360p/index.m3u8?_HLS_part=1")[0] == 400
    # The preload hint is held until the part is written, then served.
    hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
    assert hint is not None
    status, headers, body = w.get(f"/hls/360p/{hint[1]}")
    assert status == 200 and body[4:8] == b"moof" and "immutable" in headers["Cache-Control"]


def check_bound(w: WorkerProc) -> None:
    """Four requests held at once against a bound of 2: two wait, two are refused at once."""
    msn, part = next_part(*next_part(*newest(w)))
    results: list[tuple[int, str]] = []

    def ask() -> None:
        status, headers, _ = w.get(f"/hls/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
                                   f"&n={threading.get_ident()}")
        results.append((status, headers.get("Retry-After", "")))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [(200, ""), (200, ""), (503, "1"), (503, "1")]


def check_paths(w: WorkerProc, tmp_path: Path) -> None:
    """The LL origin's own routes (playlists from memory, held parts) stay in the origin folder
    and hold nothing beyond the part a blocking request names."""
    (tmp_path / "secret.m3u8").write_text("SECRET")
    msn, part = next_part(*newest(w))
    for path in ("/hls/../secret.m3u8", "/hls/%2e%2e/secret.m3u8", "/hls/..%2fsecret.m3u8",
                 "/hls/360p/..%2f..%2fsecret.m3u8", "/hls/../360p/index.m3u8",
                 f"/hls/nope/index.m3u8?_HLS_msn={msn}&_HLS_part={part}",
                 f"/hls/360p/../../secret.m3u8?_HLS_msn={msn}&_HLS_part={part}"):
        started = time.monotonic()
        status, _, body = w.get(path)
        assert status in (400, 404) and b"SECRET" not in body, (path, status)
        assert time.monotonic() - started < 1.5, f"{path} was held"


def check_delta_and_ffmpeg(w: WorkerProc, ffmpeg: str) -> None:
    msn, part = newest(w)
    status, delta, _ = get_lint(w, f"_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
    assert status == 200 and "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta
    # ffprobe opens an LL media playlist (init section, fMP4 segments) and finds both streams.
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                            "-of", "csv=p=0", f"{w.base}/hls/360p/index.m3u8"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and set(probe.stdout.split()) == {"h264", "aac"}, probe.stderr
    # A player without LL-HLS (ffmpeg's hls demuxer) plays the same playlist.
    out = subprocess.run([ffmpeg, "-v", "error", "-i", f"{w.base}/hls/master.m3u8", "-map",
                          "0:v:0", "-t", "3", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def check_pdt(origin: Path) -> None:
    pl = m3u8.loads((origin / "360p" / "index.m3u8").read_text())
    for seg in pl.segments[1:3]:
        joined = origin / "probe.mp4"
        joined.write_bytes((origin / "360p" / seg.init_section.uri).read_bytes()
                           + (origin / "360p" / seg.uri).read_bytes())
        out = subprocess.run(fa.barcode_probe_args(joined), capture_output=True, check=True)
        burned = fa.decode_barcode(out.stdout)
        assert abs(_explicit_pdt(seg) * 1000 - burned) <= 100


def _explicit_pdt(seg: m3u8.Segment) -> float:
    # Not current_program_date_time: the m3u8 package counts listed parts as extra time.
    return float(seg.program_date_time.timestamp())


def test_ll_worker_end_to_end(ffmpeg: str, tmp_path: Path,
                              worker_factory: list[WorkerProc]) -> None:
    w = WorkerProc(tmp_path, ["--no-kafka", "--no-redis"], env=LL_ENV)
    worker_factory.append(w)
    w.start()
    watch = PublishedWatch(tmp_path / "origin")
    try:
        w.wait_ready()
        check_blocking(w)
        check_bound(w)
        check_paths(w, tmp_path)
        deadline = time.monotonic() + 30
        while newest(w)[0] < 8 and time.monotonic() < deadline:  # 16 s: past CAN-SKIP-UNTIL
            time.sleep(0.5)
        check_delta_and_ffmpeg(w, ffmpeg)
        check_pdt(tmp_path / "origin")
        last, _ = newest(w)
        w.stop()
        w.start()
        w.wait_ready()
        text = w.get("/hls/360p/index.m3u8")[2].decode()
        assert text.count("#EXT-X-MAP:") == 2 and "#EXT-X-DISCONTINUITY\n" in text
        assert "\n0-" in text  # the window kept its first segment
        assert newest(w)[0] >= last  # numbering continued, never restarted at 0
    finally:
        problems = watch.stop()
    assert watch.checked > 20 and problems == []
