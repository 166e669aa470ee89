"""LL-HLS pure core: fMP4 boxes, the LL playlist, blocking-reload decisions and the LL lint rules.

Rules cite draft-pantos-hls-rfc8216bis ("bis"); fMP4 layouts cite ISO/IEC 14496-12.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from media.cmaf import CmafError, FragmentReader, parse_fragment, parse_init
from media.ladder import Ladder, parse_rungs
from media.lint import lint_media, lint_set
from media.ll_publisher import LLPublisher, StagedPart
from media.ll_worker import LLLaunch, LLMediaWorker
from media.llhls import (
    BadDirective,
    Directives,
    LLConfig,
    PartBook,
    PartEntry,
    Report,
    check_reachable,
    parse_directives,
    ready,
    render_ll_media,
)
from media.markers import Marker
from media.playlist import SegmentEntry, Timeline, format_pdt, render_master


def box(kind: str, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind.encode()) + payload


def full(kind: str, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def trak(track: int, handler: bytes, timescale: int) -> bytes:
    tkhd = full("tkhd", 0, 3, struct.pack(">III", 0, 0, track) + bytes(68))
    mdhd = full("mdhd", 0, 0, struct.pack(">III", 0, 0, timescale) + bytes(8))
    hdlr = full("hdlr", 0, 0, bytes(4) + handler + bytes(13))
    return box("trak", tkhd + box("mdia", mdhd + hdlr))


INIT = box("ftyp", b"isom" + bytes(4)) + box("moov", trak(1, b"soun", 48000)
                                               + trak(2, b"vide", 12800))


def moof(decode: int, samples: int, sync: bool, track: int = 2) -> bytes:
    tfhd = full("tfhd", 0, 0x20000 | 0x8, struct.pack(">II", track, 512))  # default duration
    tfdt = full("tfdt", 1, 0, struct.pack(">Q", decode))
    flags = 0 if sync else 0x10000
    trun = full("trun", 0, 0x4 | 0x200, struct.pack(">II", samples, flags)
                + struct.pack(">I", 100) * samples)
    audio = box("traf", full("tfhd", 0, 0x20000, struct.pack(">I", 1))
                + full("tfdt", 1, 0, struct.pack(">Q", 0))
                + full("trun", 0, 0, struct.pack(">I", 0)))
    return box("moof", audio + box("traf", tfhd + tfdt + trun))


class TestCmaf:
    def test_init_finds_the_video_track_and_timescale(self) -> None:
        info = parse_init(INIT)
        assert (info.video_track, info.timescale, info.size) == (2, 12800, len(INIT))

    def test_fragment_time_samples_and_sync(self) -> None:
        info = parse_init(INIT)
        frag = parse_fragment(moof(5120, 10, True), info)
        assert (frag.decode_time, frag.samples, frag.duration, frag.independent) == (
            5120, 10, 5120, True)
        assert not parse_fragment(moof(10240, 10, False), info).independent

    def test_reader_cuts_a_growing_file_at_whole_boxes(self) -> None:
        stream = INIT + moof(0, 10, True) + box("mdat", b"x" * 50) + moof(5120, 10, False) \
            + box("mdat", b"y" * 50)
        reader = FragmentReader()
        init, first = reader.feed(stream[:20])  # ftyp cut short
        assert init is None and first == []
        init, frags = reader.feed(stream[20:len(INIT) + 30])
        assert init == INIT and frags == []
        _, frags = reader.feed(stream[len(INIT) + 30:-10])
        assert len(frags) == 1 and frags[0].endswith(b"x" * 50)
        _, frags = reader.feed(stream[-10:])
        assert len(frags) == 1 and frags[0].endswith(b"y" * 50)

    def test_garbage_is_a_typed_error(self) -> None:
        with pytest.raises(CmafError):
            parse_init(box("ftyp", b"") + box("moov", trak(1, b"soun", 48000)))
        with pytest.raises(CmafError):
            parse_fragment(box("mdat", b""), parse_init(INIT))
        with pytest.raises(CmafError):
            FragmentReader().feed(struct.pack(">I4s", 3, b"moof"))


LADDER = Ladder(parse_rungs("720p,480p,360p"))
CFG = LLConfig(target_duration=2, part_target=0.4)
T0 = 1_700_000_000_000


def live(segments: int, open_parts: int, tag: str = "a") -> tuple[Timeline, PartBook]:
    tl = Timeline(target_duration=2, window=100)
    book = PartBook()
    for msn in range(segments):
        for i in range(5):
            book.add(PartEntry(msn, i, 0.4, i == 0, {"360p": 10}))
        book.open_pdt_ms, book.open_tag = T0 + msn * 2000, tag
        tl.append(SegmentEntry(msn, T0 + msn * 2000, 2.0, False, {"360p": 50}, tag))
        book.close(keep_from_msn=msn - 1, next_msn=msn + 1)
    for i in range(open_parts):
        book.add(PartEntry(segments, i, 0.4, i == 0, {"360p": 10}))
    book.open_pdt_ms, book.open_tag = T0 + segments * 2000, tag
    return tl, book


def reports() -> list[Report]:
    return [Report("../720p/index.m3u8", 9, 2)]


class TestPlaylist:
    def test_ll_tags_and_order(self) -> None:
        tl, book = live(10, 3)
        text = render_ll_media(tl, book, "360p", CFG, {}, reports())
        lines = text.splitlines()
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0," \
               "PART-HOLD-BACK=1.600" in lines
        assert "#EXT-X-PART-INF:PART-TARGET=0.40000" in lines
        assert lines[-2] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="10.3-a.m4s"'
        assert lines[-1].startswith('#EXT-X-RENDITION-REPORT:URI="../720p/index.m3u8"')
        # Parts only for the last two whole segments and the open one (bis §6.2.2).
        assert sum(line.startswith("#EXT-X-PART:") for line in lines) == 5 + 5 + 3
        # PDT comes before the open segment's first part (bis §4.4.4.9).
        first_open = lines.index('#EXT-X-PART:DURATION=0.40000,URI="10.0-a.m4s",INDEPENDENT=YES')
        assert lines[first_open - 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
        assert lint_media(text) == []

    def test_delta_update_skips_old_segments_but_keeps_dateranges(self) -> None:
        tl, book = live(10, 1)
        marker = '#EXT-X-DATERANGE:ID="b1",START-DATE="2023-11-14T22:13:20.500Z",DURATION=0'
        full_text = render_ll_media(tl, book, "360p", CFG, {0: [marker]}, reports())
        delta = render_ll_media(tl, book, "360p", CFG, {0: [marker]}, reports(), skip=True)
        # 20 s listed + 0.4 s of parts: segments ending before 12 s from the end are skipped.
        assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=4" in delta.splitlines()
        assert "\n0-a.m4s\n" in full_text and "\n0-a.m4s\n" not in delta
        assert marker in delta
        assert lint_media(delta) == []

    def test_a_new_launch_is_a_discontinuity_with_its_own_init(self) -> None:
        tl, book = live(3, 0, tag="a")
        book.add(PartEntry(3, 0, 0.4, True, {"360p": 10}))
        book.open_pdt_ms, book.open_tag = T0 + 60_000, "b"
        lines = render_ll_media(tl, book, "360p", CFG, {}, ()).splitlines()
        at = lines.index('#EXT-X-MAP:URI="init-b.mp4"')
        assert lines[at - 1] == "#EXT-X-DISCONTINUITY"
        assert lines[-1] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="3.1-b.m4s"'

    def test_ended_playlist_has_no_ll_tags(self) -> None:
        tl, book = live(3, 2)
        text = render_ll_media(tl, book, "360p", CFG, {}, (), ended=True)
        assert text.endswith("#EXT-X-ENDLIST\n")
        assert "#EXT-X-PART" not in text and "PRELOAD-HINT" not in text

    def test_the_set_lints_with_reports_for_every_other_rendition(self) -> None:
        tl = Timeline(target_duration=2, window=100)
        book = PartBook()
        for msn in range(4):
            for i in range(5):
                book.add(PartEntry(msn, i, 0.4, i == 0, {"720p": 9, "480p": 9, "360p": 9}))
            book.open_pdt_ms, book.open_tag = T0 + msn * 2000, "a"
            tl.append(SegmentEntry(msn, T0 + msn * 2000, 2.0, False,
                                   {"720p": 90_000, "480p": 50_000, "360p": 30_000}, "a"))
            book.close(keep_from_msn=msn - 1, next_msn=msn + 1)
        names = ["720p", "480p", "360p"]
        media = {f"{n}/index.m3u8": render_ll_media(
            tl, book, n, CFG, {}, [Report(f"../{o}/index.m3u8", 3, 4) for o in names if o != n])
            for n in names}
        assert lint_set(render_master(tl, LADDER), media) == []
        media["360p/index.m3u8"] = render_ll_media(tl, book, "360p", CFG, {}, ())
        assert [p.rule for p in lint_set(render_master(tl, LADDER), media)] == ["bis B.1"]


class TestBlocking:
    def test_directives_parse_and_refuse(self) -> None:
        assert parse_directives({"_HLS_msn": "7", "_HLS_part": "2", "_HLS_skip": "YES"}) == \
            Directives(7, 2, True)
        for bad in ({"_HLS_part": "1"}, {"_HLS_msn": "-1"}, {"_HLS_msn": "x"},
                    {"_HLS_msn": "1", "_HLS_skip": "NO"}):
            with pytest.raises(BadDirective):
                parse_directives(bad)

    def test_ready_follows_parts_and_rolls_over_past_the_last_part(self) -> None:
        tl, book = live(10, 2)  # newest part: 10.1
        assert ready(Directives(10, 1), tl, book)
        assert not ready(Directives(10, 2), tl, book)
        assert ready(Directives(9), tl, book) and not ready(Directives(10), tl, book)
        assert ready(Directives(9, 5), tl, book)  # past 9's last part: 10.0, which exists
        assert ready(Directives(3, 1), tl, book)  # long gone from the playlist: answer now

    def test_too_far_ahead_is_refused(self) -> None:
        tl, book = live(10, 2)
        check_reachable(Directives(12), tl, book, CFG)
        with pytest.raises(BadDirective):
            check_reachable(Directives(13), tl, book, CFG)
        check_reachable(Directives(11, 3), tl, book, CFG)  # 7 parts ahead: within 3/0.4
        with pytest.raises(BadDirective):
            check_reachable(Directives(11, 4), tl, book, CFG)


class TestLintLL:
    def test_rules_that_bite(self) -> None:
        tl, book = live(10, 3)
        good = render_ll_media(tl, book, "360p", CFG, {}, reports())
        cases = {
            "Apple 14.3": good.replace("PART-HOLD-BACK=1.600", "PART-HOLD-BACK=0.900"),
            "bis 4.4.3.7": good.replace("#EXT-X-PART-INF:PART-TARGET=0.40000\n", ""),
            "bis 4.4.4.9": good.replace('DURATION=0.40000,URI="10.1', 'DURATION=0.45000,URI="10.1'),
            "bis 8": good.replace("#EXT-X-VERSION:9", "#EXT-X-VERSION:5"),
        }
        for rule, text in cases.items():
            assert rule in {p.rule for p in lint_media(text)}, rule
        # PDT after the open segment's first part.
        lines = good.splitlines()
        i = next(n for n, x in enumerate(lines) if x.startswith("#EXT-X-PART:") and "10.0" in x)
        lines[i - 1], lines[i] = lines[i], lines[i - 1]
        assert "bis 4.4.4.9" in {p.rule for p in lint_media("\n".join(lines) + "\n")}
        # Parts kept too long (the three oldest segments still listing theirs).
        tl2, book2 = live(10, 3)
        for msn in (5, 6, 7):
            book2.parts[msn] = [PartEntry(msn, i, 0.4, i == 0, {}) for i in range(5)]
        stale = render_ll_media(tl2, book2, "360p", CFG, {}, reports())
        assert "bis 6.2.2" in {p.rule for p in lint_media(stale)}


class TestPublisher:
    """The LL publisher's files and playlists (real files in a temporary folder)."""

    @staticmethod
    def feed(pub: LLPublisher, n: int, start: int = 0, tag: str = "a") -> None:
        for i in range(start, start + n):
            pub.publish_part(StagedPart(tag, T0 + i * 400, 0.4, i % 5 == 0,
                                        {"720p": b"v" * 90, "360p": b"w" * 30}, i == start))

    def test_a_ball_in_the_open_segment_is_marked_before_its_parts(self, tmp_path: Path) -> None:
        pub = LLPublisher(tmp_path, Ladder(parse_rungs("720p,360p")), "m", 50, None, CFG)
        pub.load()
        self.feed(pub, 12)  # segments 0, 1 whole; 2.0 and 2.1 open
        pub.markers.markers["b1"] = Marker("b1", "m", "four", T0 + 4500, 1, "0.3", "FOUR")
        pub.markers.markers["b2"] = Marker("b2", "m", "six", T0 + 4900, 1, "0.4", "SIX")
        self.feed(pub, 1, start=12)  # 2.2 ends at T0 + 5200: the edge passes both balls
        text = (tmp_path / "360p" / "index.m3u8").read_text()
        lines = text.splitlines()
        b1 = next(i for i, x in enumerate(lines) if 'ID="b1"' in x)
        assert lines[b1 + 2] == "#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(T0 + 4000)
        assert lines[b1 + 3].startswith('#EXT-X-PART:DURATION=0.40000,URI="2.0-a.m4s"')
        assert 'ID="b2"' in lines[b1 + 1]
        other = (tmp_path / "720p" / "index.m3u8").read_text()
        assert [x for x in lines if "DATERANGE" in x] == \
            [x for x in other.splitlines() if "DATERANGE" in x]
        # A ball beyond the newest part waits for the part that holds it.
        pub.markers.markers["b3"] = Marker("b3", "m", "four", T0 + 5300, 1, "0.5", "FOUR")
        assert 'ID="b3"' not in pub.playlist("360p", skip=False)  # type: ignore[operator]
        self.feed(pub, 1, start=13)
        assert 'ID="b3"' in pub.playlist("360p", skip=False)  # type: ignore[operator]

    def test_segments_are_their_parts_and_numbering_survives_a_restart(
            self, tmp_path: Path) -> None:
        pub = LLPublisher(tmp_path, Ladder(parse_rungs("720p,360p")), "m", 50, None, CFG)
        pub.load()
        self.feed(pub, 12)
        assert (tmp_path / "360p" / "1-a.m4s").read_bytes() == b"w" * 150
        pub.finish()  # the launch ends: its open segment 2 is as long as it got (0.8 s)
        assert "PRELOAD-HINT" not in (tmp_path / "360p" / "index.m3u8").read_text()
        again = LLPublisher(tmp_path, Ladder(parse_rungs("720p,360p")), "m", 50, None, CFG)
        again.load()
        assert again.book.open_msn == 3
        self.feed(again, 6, start=100, tag="b")  # a new launch, 38 s later
        text = (tmp_path / "360p" / "index.m3u8").read_text()
        assert "#EXTINF:0.80000,\n2-a.m4s" in text
        assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-b.mp4"' in text
        assert "\n3-b.m4s" in text and lint_media(text) == []


class TestLaunchShell:
    """``LLLaunch`` reading what the encoder wrote (hand-made fMP4 here, real ffmpeg in
    test_ll_live.py): all rungs' fragments become parts; garbage ends the launch."""

    @staticmethod
    def launch(tmp_path: Path) -> tuple[LLMediaWorker, LLLaunch]:
        from media import ffmpeg_args as fa
        from media.worker import WorkerConfig

        cfg = WorkerConfig(tmp_path, Ladder(parse_rungs("720p,480p,360p")),
                           fa.Source("synthetic", width=1280, height=720), "m")
        worker = LLMediaWorker(cfg)
        launch = LLLaunch(worker, worker.ladder)
        for rung in worker.ladder.rungs:
            (launch.dir / rung.name).mkdir(parents=True)
        return worker, launch

    def test_fragments_of_every_rung_become_parts(self, tmp_path: Path) -> None:
        worker, launch = self.launch(tmp_path)
        capture0 = 1_800_000_000_000
        launch.capture_note.write_text(f"frame:0    pts:{capture0 * 25}\n")
        for rung in worker.ladder.rungs:
            data = INIT + b"".join(moof(i * 5120, 10, i % 5 == 0) + box("mdat", b"f" * 40)
                                   for i in range(6))
            (launch.dir / rung.name / "stream.mp4").write_bytes(data)
        launch._publish_ready()
        assert launch.failure is None and launch.next_index == 6
        text = (tmp_path / "origin" / "360p" / "index.m3u8").read_text()
        assert f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(capture0)}\n" in text
        assert f'#EXT-X-MAP:URI="init-{launch.tag}.mp4"' in text
        assert f'URI="1.0-{launch.tag}.m4s",INDEPENDENT=YES' in text
        assert (tmp_path / "origin" / "720p" / f"init-{launch.tag}.mp4").read_bytes() == INIT

    def test_an_unreadable_stream_ends_the_launch(self, tmp_path: Path) -> None:
        worker, launch = self.launch(tmp_path)
        for rung in worker.ladder.rungs:
            (launch.dir / rung.name / "stream.mp4").write_bytes(struct.pack(">I4s", 3, b"ftyp"))
        launch._publish_ready()
        assert launch.failure == "bad_fragment"
