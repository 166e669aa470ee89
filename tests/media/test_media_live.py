"""Live runs of the media worker with real ffmpeg (and Kafka for markers)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import m3u8
import pytest

from media import ffmpeg_args as fa
from media.lint import lint_set
from media.playlist import format_pdt
from runtime.redisconn import sync_redis
from schemas import topology
from schemas.media import SegmentPublished
from schemas.media import decode as decode_segment
from schemas.notifications import Kind, Notification, Priority
from schemas.store_access import RedisUser
from tests.media.conftest import PublishedWatch, WorkerProc, free_port

pytestmark = [pytest.mark.media, pytest.mark.slow]


def _pdt_ms(seg: m3u8.Segment) -> int:
    return round(seg.current_program_date_time.timestamp() * 1000)


def _barcode_ms(path: Path) -> int:
    out = subprocess.run(fa.barcode_probe_args(path), capture_output=True, check=True, timeout=30)
    return fa.decode_barcode(out.stdout)


def _first_video_pts(path: Path) -> str:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "packet=pts_time", "-of", "csv=p=0", "-read_intervals", "%+#1",
                          str(path)], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()[0].strip(",")


def _keyframes(path: Path) -> list[str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "packet=pts_time,flags", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)
    return [line.split(",")[0] for line in out.stdout.splitlines() if ",K" in line]


@pytest.mark.parametrize("size,scaled", [((854, 480), "640:360"), ((1280, 720), "426:240")])
def test_burned_clock_reads_back_at_any_size(ffmpeg: str, tmp_path: Path,
                                             size: tuple[int, int], scaled: str) -> None:
    """The barcode of frame 0, downscaled like a rung, is the capture note's instant."""
    from media.worker import find_font

    note, raw, small = tmp_path / "capture.txt", tmp_path / "src.nut", tmp_path / "small.nut"
    (tmp_path / "clock.txt").write_text(fa.clock_template())
    (tmp_path / "bug.txt").write_text("bug")
    argv = fa.synthetic_args(fa.Source("synthetic", width=size[0], height=size[1]), 25, 48000,
                             find_font(), tmp_path / "clock.txt", tmp_path / "bug.txt", note,
                             realtime=False, ffmpeg=ffmpeg)
    subprocess.run([*argv[:-1], "-frames:v", "2", str(raw)], check=True, timeout=60)
    subprocess.run([ffmpeg, "-v", "error", "-i", str(raw), "-vf", f"scale={scaled}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", str(small)],
                   check=True, timeout=60)
    capture0 = fa.parse_capture_note(note.read_text(), 25)
    assert capture0 is not None and abs(capture0 - time.time() * 1000) < 30_000
    assert _barcode_ms(raw) == capture0
    assert _barcode_ms(small) == capture0


def _fetch_set(w: WorkerProc) -> tuple[str, dict[str, str]]:
    master = w.get("/hls/master.m3u8")[2].decode()
    uris = [p.uri for p in m3u8.loads(master).playlists]
    return master, {u: w.get(f"/hls/{u}")[2].decode() for u in uris}


def _sizes(origin: Path, media: dict[str, str]) -> dict[str, dict[str, int]]:
    return {uri: {s.uri: (origin / uri.split("/")[0] / s.uri).stat().st_size
                  for s in m3u8.loads(text).segments} for uri, text in media.items()}


def _notify(producer, match_id: str, kind: Kind, n: int) -> Notification:
    now = dt.datetime.now(dt.UTC)
    note = Notification(id=f"{match_id}:{n}", match_id=match_id, kind=kind,
                        priority=Priority.P1, ts=format_pdt(now.timestamp() * 1000), seq=n,
                        innings=1, over=f"{n}.1", text=f"{kind} at ball {n}")
    producer.produce(topology.NOTIFICATIONS.name, key=match_id, value=note.encode())
    producer.flush(10)
    return note


def _segment_events(kafka: dict[str, Any], match_id: str, want: set[tuple[str, int]],
                    timeout: float = 30) -> list[SegmentPublished]:
    """Every ``media.segments`` record of this match, until ``want`` (rendition, msn) is seen."""
    from confluent_kafka import Consumer

    consumer = Consumer({**kafka, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topology.MEDIA_SEGMENTS.name])
    out: list[SegmentPublished] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1):
                if msg.error() is None and msg.key() == match_id.encode():
                    out.append(decode_segment(msg.value()))
            if want <= {(e.rendition, e.msn) for e in out}:
                break
    finally:
        consumer.close()
    return out


def _check_segment_events(events: list[SegmentPublished], playlists: dict[str, m3u8.M3U8],
                          origin: Path) -> None:
    """One event per segment per rendition, carrying the playlist's own figures."""
    keys = [(e.rendition, e.msn) for e in events]
    assert len(keys) == len(set(keys)), "duplicate media.segments records"
    by_key = {(e.rendition, e.msn): e for e in events}
    for uri, pl in playlists.items():
        rung = uri.split("/")[0]
        for seg in pl.segments:
            msn = int(seg.uri.removesuffix(".ts"))
            event = by_key.get((rung, msn))
            assert event is not None, f"no media.segments record for {rung} {msn}"
            assert event.pdt == format_pdt(_pdt_ms(seg))
            assert event.duration == pytest.approx(seg.duration, abs=1e-6)
            assert event.bytes == (origin / rung / seg.uri).stat().st_size
            assert event.discontinuity == bool(seg.discontinuity)
            assert 0 < event.publish_delay_ms < 2000


def _check_markers(notes: list[Notification], media: dict[str, str]) -> None:
    """Ball events in every rendition, before the segment holding their instant."""
    for text in media.values():
        pl = m3u8.loads(text)
        lines = text.splitlines()
        for note in notes:
            tag = next((i for i, line in enumerate(lines) if f'ID="{note.id}"' in line), None)
            if note.kind is Kind.TARGET_SET:
                assert tag is None  # not a ball marker kind
                continue
            assert tag is not None, f"{note.id} missing"
            start = round(note.instant.timestamp() * 1000)
            uri = next(line for line in lines[tag:] if line and not line.startswith("#"))
            seg = next(s for s in pl.segments if s.uri == uri)
            assert 0 <= start - _pdt_ms(seg) < seg.duration * 1000 + 1


def _check_aligned_keyframes(origin: Path, playlists: dict[str, m3u8.M3U8]) -> None:
    """ffprobe: segment N holds one IDR, at its first frame, at the same PTS in every rung."""
    rungs = [u.split("/")[0] for u in playlists]
    for seg in next(iter(playlists.values())).segments:
        keys = {r: _keyframes(origin / r / seg.uri) for r in rungs}
        assert len({tuple(k) for k in keys.values()}) == 1, keys
        assert len(keys[rungs[0]]) == 1, keys
        first = _first_video_pts(origin / rungs[0] / seg.uri)
        assert keys[rungs[0]][0] == first, (seg.uri, keys, first)


def _pdt_errors(origin: Path, playlists: dict[str, m3u8.M3U8]) -> list[int]:
    """|PDT - clock burned into the segment's first frame|, ms, read back with ffmpeg."""
    return [abs(_pdt_ms(seg) - _barcode_ms(origin / uri.split("/")[0] / seg.uri))
            for uri, pl in playlists.items() for seg in pl.segments]


@pytest.mark.stack
def test_sixty_second_live_run(ffmpeg: str, kafka: dict[str, Any], media_settings, tmp_path: Path,
                               worker_factory: list[WorkerProc]) -> None:
    from confluent_kafka import Producer

    match_id = f"media-{uuid.uuid4().hex[:8]}"
    card = {"teams": ["MI", "CSK"], "innings": [{"batting_team": "MI", "runs": 145,
                                                 "wickets": 3, "overs": "16.2"}]}
    r = sync_redis(media_settings, RedisUser.ADMIN)
    r.set(topology.RedisKeys.card(match_id), json.dumps(card), ex=600)
    w = WorkerProc(tmp_path, ["--match-id", match_id])  # the default ladder
    worker_factory.append(w)
    w.start()
    w.wait_ready()
    producer = Producer(kafka)
    notes, began = [], time.monotonic()
    for at, kind in ((8, Kind.FOUR), (22, Kind.WICKET), (36, Kind.SIX), (44, Kind.TARGET_SET)):
        time.sleep(max(0.0, began + at - time.monotonic()))
        notes.append(_notify(producer, match_id, kind, len(notes) + 1))
    time.sleep(max(0.0, began + 60 - time.monotonic()))
    master, media = _fetch_set(w)
    master_cache = w.get("/hls/master.m3u8")[1]["Cache-Control"]
    seg_headers = w.get(f"/hls/{next(iter(media)).split('/')[0]}/1.ts")[1]
    metrics = w.get("/metrics")[2].decode()
    status = w.status()
    w.stop()

    assert master_cache == "public, max-age=1"
    assert "immutable" in seg_headers["Cache-Control"]
    # The whole default ladder, at its first preset, with no speed-guard step and no restart.
    ladder = media_settings.media_ladder.split(",")
    assert [p.uri for p in m3u8.loads(master).playlists] == [f"{n}/index.m3u8" for n in ladder]
    assert "stumpcast_media_ladder_steps_total 0.0" in metrics, status
    assert status["launches"] == 1 and status["preset"] == media_settings.media_preset, status
    assert (tmp_path / "scorebug.txt").read_text().startswith("MI 145/3 (16.2 ov)")
    origin = tmp_path / "origin"
    assert lint_set(master, media, _sizes(origin, media)) == []
    playlists = {u: m3u8.loads(t) for u, t in media.items()}
    assert len({tuple(s.uri for s in pl.segments) for pl in playlists.values()}) == 1
    assert len(next(iter(playlists.values())).segments) >= 28  # ~60 s of 2 s segments

    _check_aligned_keyframes(origin, playlists)
    errors = _pdt_errors(origin, playlists)
    assert max(errors) <= 100, sorted(errors)[-5:]
    _check_markers(notes, media)
    want = {(u.split("/")[0], int(s.uri.removesuffix(".ts")))
            for u, pl in playlists.items() for s in pl.segments}
    _check_segment_events(_segment_events(kafka, match_id, want), playlists, origin)


def _gap_check(segs: list[m3u8.Segment], i: int, origin: Path, rung: str) -> float:
    """At discontinuity ``i``: the PDT jump equals the real gap read from the burned clock."""
    before, after = segs[i - 1], segs[i]
    assert after.discontinuity
    jump = _pdt_ms(after) - _pdt_ms(before) - before.duration * 1000
    real = (_barcode_ms(origin / rung / after.uri) - _barcode_ms(origin / rung / before.uri)
            - before.duration * 1000)
    assert real > 0 and abs(jump - real) <= 100, (jump, real)
    return jump


def test_restarts_continue_the_playlists(ffmpeg: str, tmp_path: Path,
                                         worker_factory: list[WorkerProc]) -> None:
    env = {"STUMPCAST_MEDIA_LADDER": "480p,360p"}
    w = WorkerProc(tmp_path, ["--no-kafka", "--no-redis"], env)
    worker_factory.append(w)
    w.start()
    w.wait_ready()
    watch = PublishedWatch(tmp_path / "origin")
    time.sleep(6)
    # A crashing encoder: the worker reports it and restarts it with backoff.
    os.kill(w.status()["pids"]["encoder"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while w.status()["launches"] < 2 or w.status()["state"] != "live":
        assert time.monotonic() < deadline, w.log_tail()
        time.sleep(0.3)
    assert w.status()["last_exit"] == "encoder_crashed:SIGKILL"
    assert any("restart in 0.5s" in n for n in w.status()["notes"])
    time.sleep(7)
    # A killed worker: SIGKILL, its ffmpeg children too, then a fresh worker on the same folder.
    pids = w.status()["pids"]
    assert w.proc is not None
    w.proc.kill()
    w.proc.wait()
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    before = m3u8.loads((tmp_path / "origin/360p/index.m3u8").read_text())
    time.sleep(3)
    w2 = WorkerProc(tmp_path, ["--no-kafka", "--no-redis"], env)
    worker_factory.append(w2)
    w2.start()
    w2.wait_ready()
    time.sleep(5)
    master, media = _fetch_set(w2)
    w2.stop()
    assert watch.stop() == [] and watch.checked > 50
    assert lint_set(master, media) == []
    after = m3u8.loads(media["360p/index.m3u8"])
    msns = [after.media_sequence + i for i in range(len(after.segments))]
    assert [int(s.uri.removesuffix(".ts")) for s in after.segments] == msns
    assert msns[0] == before.media_sequence  # nothing dropped, numbering continues
    disc = [i for i, s in enumerate(after.segments) if s.discontinuity]
    assert len(disc) == 2, media["360p/index.m3u8"]
    assert disc[1] == len(before.segments)  # the restarted worker's first segment
    origin = tmp_path / "origin"
    for i in disc:  # encoder crash, then worker kill: PDT moves by the real gap, no more
        _gap_check(after.segments, i, origin, "360p")
    assert _gap_check(after.segments, disc[1], origin, "360p") >= 3000  # it slept 3 s
    errors = _pdt_errors(origin, {u: m3u8.loads(t) for u, t in media.items()})
    assert max(errors) <= 100, sorted(errors)[-5:]


def test_bad_inputs_report_and_back_off(ffmpeg: str, tmp_path: Path,
                                        worker_factory: list[WorkerProc]) -> None:
    junk = tmp_path / "junk.ts"
    junk.write_bytes(os.urandom(200_000))
    bad = WorkerProc(tmp_path / "bad", ["--no-kafka", "--no-redis", "--source", "file",
                                        "--input", str(junk)],
                     {"STUMPCAST_MEDIA_LADDER": "360p"})
    bad.work.mkdir()
    worker_factory.append(bad)
    bad.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            status = bad.status()
            if status["launches"] >= 3:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, bad.log_tail()
        time.sleep(0.3)
    assert status["last_exit"] == "input_error"
    assert any("restart in" in n for n in status["notes"])
    assert bad.get("/readyz")[0] == 503
    assert not (bad.work / "origin" / "master.m3u8").exists()
    bad.stop()

    rtmp_port = str(free_port())
    live = WorkerProc(tmp_path / "rtmp", ["--no-kafka", "--no-redis", "--source", "rtmp"],
                      {"STUMPCAST_MEDIA_LADDER": "360p", "STUMPCAST_MEDIA_RTMP_PORT": rtmp_port})
    live.work.mkdir()
    worker_factory.append(live)
    live.start()
    time.sleep(2)
    assert live.status()["state"] == "waiting_for_input"
    watch = PublishedWatch(live.work / "origin")
    for attempt in (1, 2):  # a publisher that dies, then one that comes back
        pub = subprocess.Popen(
            [ffmpeg, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
             "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
             "-c:a", "aac", "-f", "flv", fa.rtmp_listen_url(int(rtmp_port))])
        try:
            live.wait_ready()
            time.sleep(3)
        finally:
            pub.kill()  # a dead publisher
            pub.wait()
        deadline = time.monotonic() + 20
        while live.status()["launches"] < attempt + 1:
            assert time.monotonic() < deadline, live.log_tail()
            time.sleep(0.3)
        status = live.status()
        assert status["last_exit"] == "input_ended", status
        assert f"input_ended; restart in {0.5 * 2 ** (attempt - 1):.1f}s" in status["notes"]
    time.sleep(1)
    assert live.status()["state"] == "waiting_for_input"
    master, media = _fetch_set(live)
    live.stop()
    assert watch.stop() == [] and watch.checked > 20
    assert lint_set(master, media) == []
    segs = m3u8.loads(media["360p/index.m3u8"]).segments
    assert sum(1 for s in segs if s.discontinuity) == 1  # the second publisher's first segment
