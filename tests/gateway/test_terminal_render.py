"""`stumpcast watch`'s terminal scorecard (gateway.terminal_render, pure) on real matches, and the
three outputs of its shell (gateway.terminal) on a string buffer. No stack, no sockets.

Each card is the project's fold of a real match (Cricsheet, ODC-BY 1.0) up to some event, so
the expected numbers are those of the match, checked against the document too.
"""

from __future__ import annotations

import functools
import io
import re
from typing import Any

import pytest

from gateway import terminal_render as view
from gateway.terminal import BlocksView, Frame, ProgressView, ScreenView, make_view
from schemas import protocol as p
from schemas.scorecard import CREDIT
from streams.fold import Card, apply
from tests.streams.cricsheet_data import events

FINAL = "1370353"      # 2023 IPL final: Gujarat Titans 214/4, CSK 171/5 in 15 overs (DLS)
SUPER_OVERS = "1216517"  # a tie, then two super overs
NO_RESULT = "1178424"
ESC = "\x1b"


@functools.cache
def cards(stem: str) -> tuple[dict[str, Any], ...]:
    """The scorecard document after each event of the match (index = seq - 1)."""
    card, out = Card.empty(stem), []
    for event in events(stem):
        card = apply(card, event)
        out.append(card.scorecard().to_json())
    return tuple(out)


def at(stem: str, seq: int) -> dict[str, Any]:
    doc = cards(stem)[seq - 1]
    assert doc["seq"] == seq
    return doc


class TestTheFinal:
    def test_first_innings_in_progress(self) -> None:
        lines = view.card_lines(at(FINAL, 60))
        assert lines == [
            "Gujarat Titans v Chennai Super Kings",
            "Indian Premier League · Narendra Modi Stadium, Ahmedabad",
            "Gujarat Titans 82/1 (9.3 ov)  RR 8.63",
            "",
            "Batter                          R    B   4s   6s      SR",
            "B Sai Sudharsan *               5    8    0    0    62.5",
            "WP Saha                        38   29    3    1   131.0",
            "",
            "Bowler                           O   M    R   W    Econ",
            "M Theekshana                   2.3   0   20   0    8.00",
            "",
            "This over  1 1 •",
            "Partnership 15 (15)  B Sai Sudharsan & WP Saha",
            "FoW 1-67 (Shubman Gill, 6.6 ov)",
        ]

    def test_the_chase_shows_target_need_and_required_rate(self) -> None:
        doc = at(FINAL, 190)
        inn = doc["innings"][-1]
        lines = view.card_lines(doc)
        assert "Gujarat Titans 214/4 (20.0 ov)" in lines  # the first innings, in the list
        assert "Chennai Super Kings 104/2 (9.4 ov)  RR 10.76" in lines
        assert "Target 171 (revised) · need 67 from 32 balls · RRR 12.56" in lines
        assert (inn["target"], inn["required_rate"]) == (171, 12.56)

    def test_the_end_shows_the_result_and_the_not_out_batters(self) -> None:
        lines = view.card_lines(at(FINAL, 223))
        assert "Innings ended: target reached" in lines
        assert "Result: Chennai Super Kings won by 5 wickets (0 balls left, DLS method)" in lines
        assert [x.split()[0:2] for x in lines if x.startswith(("S Dube", "RA Jadeja"))] == \
            [["S", "Dube"], ["RA", "Jadeja"]]
        assert not any(x.startswith(("Bowler", "This over", "Partnership")) for x in lines)
        assert lines[-3:] == [
            "FoW 1-74 (RD Gaikwad, 6.3 ov), 2-78 (DP Conway, 6.6 ov),",
            "    3-117 (AM Rahane, 10.5 ov), 4-149 (AT Rayudu, 12.4 ov),",
            "    5-149 (MS Dhoni, 12.5 ov)"]

    def test_a_batter_out_to_the_last_ball_is_not_marked_on_strike(self) -> None:
        lines = view.card_lines(at(FINAL, 45))  # Gill stumped at 6.6; the fold keeps him in
        assert any(x.startswith("Shubman Gill (out)") for x in lines)
        assert not any("*" in x for x in lines)

    def test_before_the_first_ball(self) -> None:
        assert view.card_lines(at(FINAL, 2))[-2:] == [
            "Chennai Super Kings won the toss and chose to field", "Waiting for the first ball"]


def rate(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(screen: list[str], head: str) -> list[str]:
    """The rows under the header ``head`` down to the next blank line."""
    start = next((i for i, x in enumerate(screen) if x.startswith(head)), None)
    if start is None:
        return []
    rows = screen[start + 1:]
    return rows[:rows.index("")] if "" in rows else rows


@pytest.mark.parametrize("stem", [FINAL, SUPER_OVERS, NO_RESULT, "287862", "1082628"])
def test_every_card_of_a_match_agrees_with_its_document_and_fits_80_columns(stem: str) -> None:
    for doc in cards(stem):
        screen = view.screen_lines(doc, f"match {stem} · seq {doc['seq']} · live", None, 80, 24)
        assert len(screen) == 24 and screen[-1] == CREDIT
        assert all(len(x) <= 80 for x in screen + view.card_lines(doc))
        inn = view.current_innings(doc)
        if inn is None:
            continue
        assert view.score_line(inn) in screen[:12]  # never cut, even after super overs
        rows = table(screen, "Batter ")
        want = [r for r, _ in view.crease(inn)]
        assert [x.split()[-5:] for x in rows] == [
            [str(r["runs"]), str(r["balls"]), str(r["fours"]), str(r["sixes"]),
             rate(r["strike_rate"], 1)] for r in want]
        assert [x[:view.NAME_W].split(" *")[0].split(" (out)")[0].strip() for x in rows] == \
            [r["name"] for r in want]
        on_strike = [x for x in rows if x[:view.NAME_W].rstrip().endswith(" *")]
        assert len(on_strike) == len([r for r, s in view.crease(inn) if s and not r["out"]])
        bowler = table(screen, "Bowler ")
        if inn.get("bowler"):
            b = next(b for b in inn["bowling"] if b["name"] == inn["bowler"])
            assert bowler[0].split()[-5:] == [b["overs"], str(b["maidens"]), str(b["runs"]),
                                             str(b["wickets"]), rate(b["economy"], 2)]


def test_progress_lines_tell_the_whole_final() -> None:
    lines, prev = [], None
    for doc in cards(FINAL):
        lines += view.progress_lines(prev, doc)
        prev = doc
    assert sum("end of over" in x for x in lines) == 20 + 15
    assert len(re.findall(r"  W ", "\n".join(lines))) == 9
    assert "Gujarat Titans 67/1 (7.0 ov)  RR 9.57  W Shubman Gill st MS Dhoni b RA Jadeja 39 (20)"\
        "  end of over 7" in lines
    assert "Chennai Super Kings 149/4 (12.4 ov)  RR 11.76  need 22 from 14 balls  W AT Rayudu " \
        "c & b MM Sharma 19 (8)" in lines
    assert "Gujarat Titans 116/1 (12.3 ov)  RR 9.28  fifty for WP Saha 52 (36)" in lines
    assert "Chennai Super Kings 0/0 (0.0 ov)  RR –  need 171 from 90 balls  target revised: " \
        "171 from 90 balls" in lines  # rain: DLS
    assert [x for x in lines if x.startswith("Result")] == [
        "Result: Chennai Super Kings won by 5 wickets (0 balls left, DLS method)"]


def test_progress_lines_survive_skipped_cards() -> None:
    """The gateway may conflate updates: every wicket is still told, each once."""
    docs = cards(FINAL)
    lines, prev = [], None
    for doc in [*docs[::7], docs[-1]]:
        lines += view.progress_lines(prev, doc)
        prev = doc
    fallen = re.findall(r"  W ([^()]+?) (?:c|b|st|lbw|run) ", "\n".join(lines))
    assert len(fallen) == 9 and len(set(fallen)) == 9
    assert view.progress_lines(docs[-1], docs[-1]) == []


def test_a_tie_then_the_super_over_result() -> None:
    lines, prev = [], None
    for doc in cards(SUPER_OVERS):
        lines += view.progress_lines(prev, doc)
        prev = doc
    assert [x for x in lines if x.startswith("Result")] == [
        "Result: Match tied", "Result: Match tied (Kings XI Punjab won the Super Over)"]
    assert any(x.startswith("Mumbai Indians (super over) 0/0") for x in lines)


def test_a_viewer_does_not_crash_on_a_sparse_or_newer_card() -> None:
    assert view.card_lines({}) == ["match", "Waiting for the first ball"]
    lines = view.card_lines({"teams": ["A", "B"], "innings": [{"batting_team": "A", "runs": 3,
                                                               "batters_in": ["x"]}]})
    assert "A 3/0 (None ov)  RR –" in lines and any(x.startswith("x *") for x in lines)
    assert len(view.screen_lines(None, "s", height=5)) == 5


def test_long_names_and_items_are_cut_to_the_width() -> None:
    assert view.wrap_items("FoW ", ["a" * 30, "b" * 30, "c" * 30], 40) == [
        "FoW " + "a" * 30 + ",", "    " + "b" * 30 + ",", "    " + "c" * 30]
    row = view.batter_row({"name": "N" * 60, "runs": 100, "balls": 50, "fours": 10,
                           "sixes": 5, "strike_rate": 200.0}, True)
    assert row.startswith("N" * 24 + "… *") and len(row) <= 80


# -- the shell's three outputs -----------------------------------------------------------------

def frame(seq: int) -> Frame:
    doc = at(FINAL, seq)
    return Frame(doc, p.ChannelPosition(1, seq), {"over": "6.6", "text": "WICKET!"}, f"seq {seq}")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_screen_redraws_in_place_with_one_write_per_frame() -> None:
    out = Tty()
    screen = make_view("auto", out)
    assert isinstance(screen, ScreenView)
    screen.size = lambda: (80, 24)
    screen.start()
    screen.show(frame(60))
    screen.show(frame(61))
    screen.stop()
    text = out.getvalue()
    assert text.count("\x1b[H") == 3 and text.count("\x1b[J") == 2  # start, then each frame
    last = text.rsplit("\x1b[H", 1)[1]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last).rstrip("\n").split("\n")
    assert plain == view.screen_lines(at(FINAL, 61), "seq 61", {"over": "6.6",
                                                                "text": "WICKET!"}, 80, 24)


def test_blocks_are_plain_text_once_per_card_with_the_credit_once() -> None:
    out = io.StringIO()
    blocks = make_view("auto", out)
    assert isinstance(blocks, BlocksView)
    for seq in (60, 60, 61):
        blocks.show(frame(seq))
    text = out.getvalue()
    assert ESC not in text and text.count(CREDIT) == 1
    assert text.count("-- seq 60 ") == 1 and text.count("-- seq 61 ") == 1
    assert "\n".join(view.card_lines(at(FINAL, 61))) in text


def test_progress_view_prints_plain_lines() -> None:
    out = io.StringIO()
    progress = ProgressView(out)
    for seq in (40, 45, 46):
        progress.show(frame(seq))
    assert ESC not in out.getvalue()
    assert out.getvalue().splitlines() == [
        view.score_line(at(FINAL, 40)["innings"][0]), CREDIT,
        "Gujarat Titans 67/1 (7.0 ov)  RR 9.57  W Shubman Gill st MS Dhoni b RA Jadeja 39 (20)"
        "  end of over 7"]
