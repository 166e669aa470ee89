"""The pure media core: argv snapshots, playlists, markers, linter, progress, TS parsing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from media import ffmpeg_args as fa
from media.ladder import DEFAULT_RUNGS, Ladder, LadderError, parse_rungs
from media.lint import lint_master, lint_media, lint_set
from media.markers import CLASS_RETRACTION, MarkerBook, daterange, place
from media.playlist import SegmentEntry, Timeline, format_pdt, render_master, render_media
from media.progress import ProgressParser, SpeedGuard
from media.publisher import StagedSet, entry_for
from media.runner import Backoff, classify_exit
from media.segments import SegmentError, check_ts, parse_list
from schemas.media import SegmentPublished, decode
from schemas.notifications import Kind, Notification, Priority, retraction

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_780_000_000_123


def _golden(name: str, value: object) -> None:
    path = GOLDEN / name
    if os.environ.get("STUMPCAST_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(value, indent=1) + "\n")
    assert value == json.loads(path.read_text())


# -- ffmpeg argv as data ----------------------------------------------------------------------

def test_encoder_argv_snapshot() -> None:
    argv = fa.encoder_args(Ladder(DEFAULT_RUNGS), fa.Source("synthetic"), Path("/st"))
    _golden("encoder_synthetic.json", argv)


def test_synthetic_argv_snapshot() -> None:
    argv = fa.synthetic_args(fa.Source("synthetic"), 25, 48000, Path("/f.ttf"),
                             Path("/st/clock.txt"), Path("/w/bug.txt"), Path("/st/capture.txt"))
    _golden("synthetic.json", argv)


def test_input_args_per_source() -> None:
    assert fa.input_args(fa.Source("rtmp", fa.rtmp_listen_url(19350))) == [
        "-listen", "1", "-i", "rtmp://127.0.0.1:19350/live/stream"]
    assert fa.input_args(fa.Source("file", "/x.ts"))[:4] == ["-re", "-stream_loop", "-1", "-i"]
    assert "mode=listener" in fa.input_args(fa.Source("srt", fa.srt_listen_url(1)))[1]


def test_every_rung_has_the_same_gop_and_no_scenecut() -> None:
    argv = fa.encoder_args(Ladder(DEFAULT_RUNGS), fa.Source("synthetic"), Path("/st"))
    assert argv.count("-sc_threshold") == 4
    assert argv.count("expr:gte(t,n_forced*2)") == 4
    gops = [argv[i + 1] for i, a in enumerate(argv) if a == "-g"]
    assert gops == ["50"] * 4


def test_encoder_never_retimes_the_synthetic_source() -> None:
    # The capture timeline is CFR from the source: no wall-clock setpts, no fps filter, no
    # fine encoder time base (jittery stamps rounded to 1/fps made PDT jump by 40-120 ms).
    argv = fa.encoder_args(Ladder(DEFAULT_RUNGS), fa.Source("synthetic"), Path("/st"))
    graph = argv[argv.index("-filter_complex") + 1]
    assert "RTCTIME" not in graph and "setpts" not in graph and "fps=" not in graph
    assert "-enc_time_base:v" not in argv
    foreign = fa.encoder_args(Ladder(DEFAULT_RUNGS), fa.Source("rtmp", "rtmp://x"), Path("/st"))
    assert "[0:v]fps=25,split=4" in foreign[foreign.index("-filter_complex") + 1]


def test_synthetic_pts_is_the_capture_clock_in_whole_frames() -> None:
    argv = fa.synthetic_args(fa.Source("synthetic"), 30, 48000, Path("/f.ttf"),
                             Path("/c.txt"), Path("/b.txt"), Path("/n.txt"))
    graph = argv[argv.index("-filter_complex") + 1]
    # tb 1/30000: a frame is exactly 1000 ticks, a millisecond exactly 30.
    assert "settb=1/30000,setpts='floor(RTCSTART/1000)*30+N*1000'" in graph
    assert "metadata=mode=print:file=/n.txt" in graph
    assert "RTCTIME" not in graph  # the clock is the camera's, not per-frame jitter


def test_capture_note_gives_frame_zero_epoch_ms() -> None:
    note = "frame:0    pts:44885916863400 pts_time:1.79544e+09\ncapture=1\n"
    assert fa.parse_capture_note(note, 25) == 1_795_436_674_536
    assert fa.parse_capture_note("", 25) is None
    assert fa.parse_capture_note("frame:0    pts:", 25) is None


def test_barcode_decodes_msb_first() -> None:
    value = 1_795_434_187_371
    cells = bytes(235 if value >> (47 - i) & 1 else 16 for i in range(48))
    assert fa.decode_barcode(cells) == value


# -- ladder -----------------------------------------------------------------------------------

def test_codecs_strings_follow_rfc6381() -> None:
    ladder = Ladder(DEFAULT_RUNGS)
    assert [ladder.codecs(r) for r in ladder.rungs] == [
        "avc1.640028,mp4a.40.2", "avc1.64001f,mp4a.40.2", "avc1.4d401e,mp4a.40.2",
        "avc1.4d401e,mp4a.40.2"]


def test_step_down_faster_preset_then_drop_top_rung() -> None:
    ladder = Ladder(parse_rungs("1080p,360p"), preset="superfast")
    ladder, what = ladder.step_down() or (None, "")
    assert ladder is not None and ladder.preset == "ultrafast" and "preset" in what
    ladder, what = ladder.step_down() or (None, "")
    assert ladder is not None and [r.name for r in ladder.rungs] == ["360p"]
    assert ladder.step_down() is None


def test_parse_rungs_rejects_unknown() -> None:
    assert parse_rungs("720p:2000")[0].video_kbps == 2000
    with pytest.raises(LadderError):
        parse_rungs("4k")


# -- playlists --------------------------------------------------------------------------------

def _entry(msn: int, pdt_ms: int, dur: float = 2.0, disc: bool = False) -> SegmentEntry:
    return SegmentEntry(msn, pdt_ms, dur, disc, {"720p": 500_000, "360p": 150_000})


def _timeline(n: int = 5, window: int = 450) -> Timeline:
    tl = Timeline(target_duration=2, window=window)
    for i in range(n):
        tl.append(_entry(i, T0 + 2000 * i))
    return tl


def test_media_playlist_has_pdt_on_every_segment_and_lints_clean() -> None:
    text = render_media(_timeline(), "720p", {})
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 5
    assert f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(T0)}" in text
    assert format_pdt(T0).endswith(".123Z")
    assert lint_media(text) == []


def test_window_slides_and_counts_discontinuities() -> None:
    tl = Timeline(target_duration=2, window=3)
    tl.append(_entry(0, T0))
    tl.append(_entry(1, T0 + 9000, disc=True))
    for i in range(2, 5):
        tl.append(_entry(i, T0 + 9000 + 2000 * (i - 1)))
    text = render_media(tl, "720p", {})
    assert "#EXT-X-MEDIA-SEQUENCE:2" in text and "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text
    with pytest.raises(ValueError):
        tl.append(_entry(9, T0))


def test_gap_needs_discontinuity() -> None:
    tl = Timeline(target_duration=2, window=10)
    tl.append(_entry(0, T0))
    tl.append(_entry(1, T0 + 5000))
    assert any(p.rule == "RFC8216 4.3.2.3" for p in lint_media(render_media(tl, "720p", {})))


def test_entry_for_reanchors_after_gap_and_restart() -> None:
    tl = _timeline(2)
    staged = StagedSet(0, T0 + 4000, 0.0, 2.0, {}, {"720p": 1}, new_launch=False)
    assert not entry_for(staged, tl).discontinuity
    late = StagedSet(3, T0 + 9000, 0.0, 2.0, {}, {"720p": 1}, new_launch=False)
    entry = entry_for(late, tl)
    assert entry.discontinuity and entry.pdt_ms == T0 + 9000 and entry.msn == 2
    restart = StagedSet(0, T0 + 4000, 0.0, 2.0, {}, {"720p": 1}, new_launch=True)
    assert entry_for(restart, tl).discontinuity


def test_master_measures_bandwidth_and_lints_clean() -> None:
    ladder = Ladder(parse_rungs("720p,360p"))
    master = render_master(_timeline(), ladder)
    assert "BANDWIDTH=2000000,AVERAGE-BANDWIDTH=2000000" in master
    assert 'CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=25.000' in master
    media = {f"{n}/index.m3u8": render_media(_timeline(), n, {}) for n in ("720p", "360p")}
    assert lint_set(master, media) == []


def test_master_lint_catches_missing_apple_attributes() -> None:
    bad = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\na.m3u8\n"
    rules = {p.rule for p in lint_master(bad)}
    assert {"Apple 9.11", "Apple 9.14", "Apple 9.1", "Apple 9.2", "Apple 9.15"} <= rules


# -- markers ----------------------------------------------------------------------------------

def _note(kind: Kind, at_ms: int, nid: str = "m1:12") -> Notification:
    return Notification(id=nid, match_id="m1", kind=kind, priority=Priority.P1,
                        ts=format_pdt(at_ms), seq=12, innings=1, over="3.4", text='SIX! "big"')


def test_marker_lands_in_the_segment_holding_its_instant() -> None:
    book = MarkerBook("m1")
    book.add(_note(Kind.SIX, T0 + 4500))
    book.add(_note(Kind.WICKET, T0 + 60_000, "m1:99"))  # beyond the edge: waits
    assert book.add(_note(Kind.SIX, T0 + 4500)) is None  # replay is a no-op
    placed = place(book.markers.values(), _timeline().entries)
    assert list(placed) == [2] and placed[2][0].id == "m1:12"


def test_daterange_text_and_retraction() -> None:
    note = _note(Kind.SIX, T0)
    book = MarkerBook("m1")
    marker = book.add(note)
    assert marker is not None
    tag = daterange(marker)
    assert tag.startswith('#EXT-X-DATERANGE:ID="m1:12",CLASS="com.stumpcast.cricket.ball",')
    assert f'START-DATE="{format_pdt(T0)}",DURATION=0' in tag and "\"big\"" not in tag
    gone = book.add(retraction(note, format_pdt(T0 + 1000), 13))
    assert gone is not None and CLASS_RETRACTION in daterange(gone)
    assert book.add(_note(Kind.SIX, T0, "other-match")) is not None  # same match, new id


def test_markers_identical_in_every_rendition() -> None:
    book = MarkerBook("m1")
    book.add(_note(Kind.FOUR, T0 + 2100))
    tl = _timeline()
    from media.markers import tags_before
    tags = tags_before(book.markers.values(), tl.entries)
    ladder = Ladder(parse_rungs("720p,360p"))
    media = {f"{n}/index.m3u8": render_media(tl, n, tags) for n in ("720p", "360p")}
    assert lint_set(render_master(tl, ladder), media) == []
    assert all("#EXT-X-DATERANGE" in t for t in media.values())


# -- progress, runner, segments, wire type ----------------------------------------------------

def test_progress_blocks() -> None:
    parser = ProgressParser()
    lines = ["frame=50", "out_time_us=2000000", "speed=1.01x", "progress=continue"]
    out = [parser.feed(line) for line in lines]
    assert out[-1] is not None and out[-1].frame == 50 and out[-1].speed == 1.01
    assert parser.feed("speed=N/A") is None


def test_speed_guard_trips_only_after_hold() -> None:
    guard = SpeedGuard(fps=25, warmup=0, hold=4, window=2)
    trips = [guard.observe(t / 2, int(t / 2 * 20)) for t in range(30)]  # 20 fps = 0.8x
    assert not trips[3] and trips[-1]
    fast = SpeedGuard(fps=25, warmup=0, hold=4, window=2)
    assert not any(fast.observe(t / 2, int(t / 2 * 25)) for t in range(30))


def test_exit_reasons_and_backoff() -> None:
    assert classify_exit(-9, []) == "encoder_crashed:SIGKILL"
    assert classify_exit(1, ["pipe:0: Invalid data found when processing input"]) == "input_error"
    assert classify_exit(0, []) == "input_ended"
    assert classify_exit(1, ["x"]) == "encoder_failed:rc=1"
    # A publisher that went away after frames flowed (ffmpeg exits 0 with an I/O error) is
    # not a malformed source; the same error before any frame is.
    gone = ["rtmp://127.0.0.1:1/live/stream: Input/output error"]
    assert classify_exit(0, gone, had_frames=True) == "input_ended"
    assert classify_exit(0, gone, had_frames=False) == "input_error"
    b = Backoff(initial=0.5, cap=2)
    assert [b.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]


def _pes_packet(pts: int) -> bytes:
    p = bytes([0x21 | ((pts >> 29) & 0x0E), (pts >> 22) & 0xFF, ((pts >> 14) & 0xFE) | 1,
               (pts >> 7) & 0xFF, ((pts << 1) & 0xFE) | 1])
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + p
    return (b"\x47\x41\x00\x10" + pes).ljust(188, b"\xff")


def test_ts_first_video_pts_and_corruption() -> None:
    assert check_ts(_pes_packet(90_000 * 7)) == 7.0
    with pytest.raises(SegmentError):
        check_ts(_pes_packet(1)[:100])
    with pytest.raises(SegmentError):
        check_ts(b"\x00" * 188)


def test_segment_list_ignores_partial_line() -> None:
    listed = parse_list("0.ts,0.000000,2.000000\n1.ts,2.000000,4.0")
    assert [(s.index, s.end) for s in listed] == [(0, 2.0)]


def test_segment_event_round_trip() -> None:
    event = SegmentPublished("m1", "720p", 7, format_pdt(T0), 2.0, 1000, 150.0)
    assert decode(event.encode()) == event
