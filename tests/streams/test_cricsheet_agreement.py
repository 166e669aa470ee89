"""Every one of the 194 real matches: the fold agrees with an independent tally of the raw
deliveries and with Cricsheet's declared outcome.

The tally below reads Cricsheet JSON directly and shares no code with the importer or the fold:
it is the plain sum a scorer would do with a pencil. Where the data itself is odd, the test says
so for that file (``QUIRKS``) rather than loosening the comparison for everyone.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.fold import replay
from tests.streams.cricsheet_data import events, match_files, raw

NOT_WICKETS = {"retired hurt", "retired not out"}
BOWLER_WICKETS = {"bowled", "caught", "caught and bowled", "lbw", "stumped", "hit wicket"}

# Files whose data disagrees with itself or needs a stated convention, and what we assert.
QUIRKS = {
    "1298152": "the 9th over of Zimbabwe's innings has 7 legal balls (one carries 5 penalty "
               "runs): legal balls are counted as bowled (55), but the over as the umpire "
               "called it stands (Law 17.5), so the innings shows 9.0 overs",
    "501255": "over 10 of RCB's chase had 5 balls (miscounted_overs): 5-ball over stands "
              "(Law 17.5), so overs show the umpire's count, not legal_balls / 6",
    "1384634": "DLS: side batting second ahead of par when play stopped, 'won by 2 runs' = "
               "total - (revised target - 1)",
    "336025": "DLS: side batting second ahead of par when play stopped, 'won by 3 runs'",
    "392186": "DLS: side batting second ahead of par when play stopped, 'won by 11 runs'",
}


def _legal(ball: dict[str, Any]) -> bool:
    extras = ball.get("extras", {})
    return "wides" not in extras and "noballs" not in extras


def tally_innings(inn: dict[str, Any], bpo: int) -> dict[str, Any]:
    """The independent, pencil-and-paper count of one innings."""
    pen = inn.get("penalty_runs", {})
    out: dict[str, Any] = {
        "runs": pen.get("pre", 0) + pen.get("post", 0), "wickets": 0, "legal": 0,
        "extras": dict.fromkeys(("wides", "noballs", "byes", "legbyes", "penalty"), 0),
        "batting": {}, "bowling": {},
    }
    out["extras"]["penalty"] += pen.get("pre", 0) + pen.get("post", 0)
    bat: dict[str, list[int]] = out["batting"]
    bowl: dict[str, dict[str, int]] = out["bowling"]
    overs = inn.get("overs", [])
    for ov_index, ov in enumerate(overs):
        for ball in ov["deliveries"]:
            _tally_ball(out, ball, bat, bowl)
        bowlers = {b["bowler"] for b in ov["deliveries"]}
        legal = sum(1 for b in ov["deliveries"] if _legal(b))
        finished = legal >= bpo or ov_index < len(overs) - 1
        conceded = sum(b["runs"]["batter"] + b.get("extras", {}).get("wides", 0)
                       + b.get("extras", {}).get("noballs", 0) for b in ov["deliveries"])
        if len(bowlers) == 1 and finished and conceded == 0:
            bowl[bowlers.pop()]["maidens"] += 1
    return out


def _tally_ball(out: dict[str, Any], ball: dict[str, Any], bat: dict[str, list[int]],
                bowl: dict[str, dict[str, int]]) -> None:
    extras = ball.get("extras", {})
    out["runs"] += ball["runs"]["total"]
    for kind, n in extras.items():
        out["extras"][kind] += n
    for name in (ball["batter"], ball["non_striker"]):
        bat.setdefault(name, [0, 0, 0, 0])
    line = bat[ball["batter"]]
    r = ball["runs"]["batter"]
    line[0] += r
    line[1] += "wides" not in extras
    boundary = not ball["runs"].get("non_boundary", False)
    line[2] += r == 4 and boundary
    line[3] += r == 6 and boundary
    b = bowl.setdefault(ball["bowler"], {"balls": 0, "runs": 0, "wickets": 0, "maidens": 0})
    b["balls"] += _legal(ball)
    out["legal"] += _legal(ball)
    b["runs"] += r + extras.get("wides", 0) + extras.get("noballs", 0)
    for w in ball.get("wickets", []):
        bat.setdefault(w["player_out"], [0, 0, 0, 0])
        out["wickets"] += w["kind"] not in NOT_WICKETS
        b["wickets"] += w["kind"] in BOWLER_WICKETS


def declared(outcome: dict[str, Any]) -> tuple[str | None, str, int | None, str | None]:
    """Cricsheet's outcome as (winner, kind, margin, method)."""
    by = outcome.get("by", {})
    method = {"D/L": "DLS", "Awarded": "awarded"}.get(outcome.get("method", ""))
    if "runs" in by or "wickets" in by:
        kind = "runs" if "runs" in by else "wickets"
        return outcome["winner"], kind, by[kind], method
    if outcome.get("result") == "no result":
        return None, "no_result", None, None
    if outcome.get("method") == "Awarded":
        return outcome["winner"], "awarded", None, "awarded"
    assert outcome.get("result") == "tie", outcome
    if "eliminator" in outcome:
        return outcome["eliminator"], "tie", None, "super_over"
    if "bowl_out" in outcome:
        return outcome["bowl_out"], "tie", None, "bowl_out"
    return None, "tie", None, method


FILES = [p.stem for p in match_files()]


@pytest.mark.parametrize("stem", FILES)
def test_match_agrees_with_raw_deliveries_and_declared_outcome(stem: str) -> None:
    doc = raw(stem)
    bpo = doc["info"].get("balls_per_over", 6)
    card = replay(events(stem)).scorecard()
    assert card.match_id == stem and card.seq == len(events(stem))
    assert len(card.innings) == len(doc["innings"])
    for inn, got in zip(doc["innings"], card.innings, strict=True):
        want = tally_innings(inn, bpo)
        where = f"{stem} innings {got.number} ({got.batting_team})"
        assert got.batting_team == inn["team"], where
        assert got.super_over == bool(inn.get("super_over")), where
        assert (got.runs, got.wickets, got.legal_balls) == (
            want["runs"], want["wickets"], want["legal"]), where
        ex = got.extras
        assert {"wides": ex.wides, "noballs": ex.noballs, "byes": ex.byes,
                "legbyes": ex.legbyes, "penalty": ex.penalty} == want["extras"], where
        assert {b.name: [b.runs, b.balls, b.fours, b.sixes] for b in got.batting} == \
            want["batting"], where
        assert [b.name for b in got.batting] == list(want["batting"]), f"{where}: batting order"
        assert {b.name: {"balls": b.legal_balls, "runs": b.runs, "wickets": b.wickets,
                         "maidens": b.maidens} for b in got.bowling} == want["bowling"], where
        assert [b.name for b in got.bowling] == list(want["bowling"]), f"{where}: bowling order"
        assert len(got.fall_of_wickets) == got.wickets
        if "target" in inn:
            assert got.target == inn["target"]["runs"], where
    result = card.result
    assert result is not None, stem
    assert (result.winner, result.kind, result.margin, result.method) == declared(
        doc["info"]["outcome"]), f"{stem}: {result.text}"


def test_quirk_1298152_seven_ball_over_stands_as_an_over() -> None:
    """README: 1298152.json has a 9th over with 7 legal balls, one with 5 penalty runs."""
    card = replay(events("1298152")).scorecard()
    zim = card.innings[0]
    assert zim.legal_balls == 55 and zim.overs == "9.0", QUIRKS["1298152"]
    assert zim.extras.penalty == 5
    nortje = next(b for b in zim.bowling if b.name == "A Nortje")
    assert (nortje.legal_balls, nortje.overs) == (13, "2.0")
    assert card.result is not None and card.result.kind == "no_result"


def test_quirk_501255_miscounted_five_ball_over_stands() -> None:
    card = replay(events("501255")).scorecard()
    rcb = card.innings[1]
    counted = raw("501255")["innings"][1]["miscounted_overs"]
    assert counted == {"9": {"balls": 5, "umpire": "RE Koertzen"}}
    # 12 overs as called (one of 5 balls) + 3 balls = 74 legal balls, shown as 12.3 not 12.2.
    assert (rcb.legal_balls, rcb.overs) == (74, "12.3"), QUIRKS["501255"]
    balaji = next(b for b in rcb.bowling if b.name == "L Balaji")
    assert (balaji.legal_balls, balaji.overs) == (8, "1.3")


@pytest.mark.parametrize("stem", ["1384634", "336025", "392186"])
def test_quirk_dls_ahead_of_par_wins_by_runs(stem: str) -> None:
    doc = raw(stem)
    second = doc["innings"][1]
    card = replay(events(stem)).scorecard()
    got = card.innings[1]
    assert card.result is not None
    assert card.result.winner == second["team"] and card.result.kind == "runs", QUIRKS[stem]
    assert card.result.margin == got.runs - (second["target"]["runs"] - 1)
    assert card.result.text.endswith("(DLS method)")
