"""The Cricsheet importer against the format itself (https://cricsheet.org/format/json/), with
small hand-made files: shapes the 194 real matches do not contain.

The files here are invented from the format's description (no Cricsheet match data is copied):
a role replacement that names no one going out, DLS/VJD results declared from a par score, every
optional field, and malformed files, whose errors must name the file, the JSON path and the
reason.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.codec import decode, encode
from schemas.events import Delivery, Event, InningsEnded, MatchDecided, TargetRevised
from schemas.scorecard import Scorecard
from streams.cricsheet import CricsheetError, import_match, load
from streams.fold import Card, apply, replay

TEAMS = ("Alpha", "Beta")
PLAYERS = {team: [f"{team[0]}{i}" for i in range(1, 12)] for team in TEAMS}
Ball = int | str  # runs off the bat, or "W": the striker bowled


def innings(team: str, balls: Sequence[Ball], **extra: Any) -> dict[str, Any]:
    """An innings of legal balls; a wicket brings in the next batter in the order."""
    squad, bowlers = PLAYERS[team], PLAYERS[TEAMS[1] if team == TEAMS[0] else TEAMS[0]]
    striker, non_striker, next_in = 0, 1, 2
    overs: list[dict[str, Any]] = []
    for i, b in enumerate(balls):
        if i % 6 == 0:
            overs.append({"over": i // 6, "deliveries": []})
        runs = 0 if b == "W" else int(b)
        d: dict[str, Any] = {"batter": squad[striker], "bowler": bowlers[10 - (i // 6) % 2],
                             "non_striker": squad[non_striker],
                             "runs": {"batter": runs, "extras": 0, "total": runs}}
        if b == "W":
            d["wickets"] = [{"kind": "bowled", "player_out": squad[striker]}]
            striker, next_in = next_in, next_in + 1
        overs[-1]["deliveries"].append(d)
    return {"team": team, "overs": overs, **extra}


def match(second: dict[str, Any], outcome: dict[str, Any], **info: Any) -> dict[str, Any]:
    """A five-over match: Alpha make 60 off their 30 balls, then ``second``."""
    return {
        "meta": {"data_version": "1.1.0", "created": "2024-05-02", "revision": 1},
        "info": {"balls_per_over": 6, "dates": ["2024-05-01"], "gender": "male",
                 "match_type": "T20", "overs": 5, "outcome": outcome,
                 "players": copy.deepcopy(PLAYERS), "teams": list(TEAMS),
                 "toss": {"winner": "Alpha", "decision": "bat"}, "venue": "Nowhere Oval", **info},
        "innings": [innings("Alpha", [2] * 30), second],
    }


def plain() -> dict[str, Any]:
    """Beta make 30 off their 30 balls: Alpha won by 30 runs, computed from the balls."""
    return match(innings("Beta", [1] * 30), {"winner": "Alpha", "by": {"runs": 30}})


def card_of(doc: dict[str, Any]) -> Scorecard:
    return replay(import_match(doc, "t")).scorecard()


def write(tmp_path: Path, doc: Any, name: str = "1234.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(doc))
    return path


def first_ball(doc: dict[str, Any], inn: int = 1) -> dict[str, Any]:
    return doc["innings"][inn]["overs"][0]["deliveries"][0]  # type: ignore[no-any-return]


# --- 1. role replacements ---------------------------------------------------------------------


def test_role_replacement_without_outgoing_player() -> None:
    """Fails on the old code: KeyError 'out' (and Replacement required player_out)."""
    doc = plain()
    first_ball(doc)["replacements"] = {"role": [
        {"in": "B3", "reason": "injury", "role": "captain"},
        {"in": "B4", "out": "B5", "reason": "injury", "role": "bowler"}]}
    events = import_match(doc, "t")
    d = next(e.payload for e in events if isinstance(e.payload, Delivery)
             and e.payload.innings == 2)
    assert [(r.player_in, r.player_out, r.role) for r in d.replacements] == [
        ("B3", None, "captain"), ("B4", "B5", "bowler")]
    assert [decode(encode(e)).payload for e in events] == [e.payload for e in events]
    assert replay(events).scorecard() == card_of(plain())  # the card does not show roles


# --- 2. results declared from a par score (DLS / VJD) ---------------------------------------


def _assert_never_ahead_of_the_officials(events: list[Event], final: str) -> None:
    """No card before the decision shows a result (a RESULT notification would go out)."""
    card = Card.empty()
    for event in events:
        card = apply(card, event)
        result = card.scorecard().result
        if isinstance(event.payload, MatchDecided):
            break
        assert result is None, f"seq {event.seq}: {result.text if result else ''}"
    final_result = replay(events).scorecard().result
    assert final_result is not None and final_result.text == final


def test_par_crossed_on_the_last_ball_before_rain_is_won_by_runs() -> None:
    """Rain after 2 overs of the chase; par 24, so the target at the stop is 25. Beta were on 22
    and hit a six off the last ball bowled: ahead of par by 4, not a chase won in play.

    Fails on the old code: "Beta won by 10 wickets (0 balls left, DLS method)"."""
    doc = match(innings("Beta", [2] * 11 + [6], target={"runs": 25, "overs": 2}),
                {"winner": "Beta", "by": {"runs": 4}, "method": "D/L"})
    events = import_match(doc, "t")
    card = replay(events).scorecard()
    assert card.result is not None
    assert (card.result.winner, card.result.kind, card.result.margin, card.result.method) == (
        "Beta", "runs", 4, "DLS")
    assert card.result.text == "Beta won by 4 runs (DLS method)"
    chase = card.innings[1]
    assert (chase.runs, chase.target, chase.end_reason) == (28, 25, "stopped")
    kinds = [type(e.payload).__name__ for e in events[-4:]]
    assert kinds == ["Delivery", "TargetRevised", "MatchDecided", "InningsEnded"]
    _assert_never_ahead_of_the_officials(events, "Beta won by 4 runs (DLS method)")


# The match reduced to four overs a side for Beta (target 50 in 4 overs, the file's target),
# then rain for good after two: par at the stop 22. The result comes from the par, not the 50.
REDUCED = {"runs": 50, "overs": 4}
TIE_ON_PAR = [2] * 10 + ["W", 2]  # 22 for 1


@pytest.mark.parametrize(("balls", "outcome", "want"), [
    ([3, 2] * 6, {"winner": "Beta", "by": {"runs": 8}, "method": "D/L"},
     ("Beta", "runs", 8, "DLS", "Beta won by 8 runs (DLS method)")),
    ([1, 1, "W", 1, 2, 1, 2, "W", 2, 2, 2, 1], {"winner": "Alpha", "by": {"runs": 7},
                                                "method": "D/L"},
     ("Alpha", "runs", 7, "DLS", "Alpha won by 7 runs (DLS method)")),
    (TIE_ON_PAR, {"result": "tie", "method": "VJD"},
     (None, "tie", None, "VJD", "Match tied (VJD method)")),
    (TIE_ON_PAR, {"result": "tie", "method": "D/L", "bowl_out": "Beta"},
     ("Beta", "tie", None, "bowl_out", "Match tied (Beta won the bowl-out)")),
], ids=["chase-ahead", "chase-behind", "tie-vjd", "tie-then-bowl-out"])
def test_par_result_when_the_file_target_is_for_the_whole_reduced_innings(
        balls: list[Ball], outcome: dict[str, Any], want: tuple[Any, ...]) -> None:
    """Fails on the old code: the fold judged the chase against 50 ("Alpha won by 19/34/27
    runs (DLS method)")."""
    doc = match(innings("Beta", balls, target=REDUCED), outcome)
    events = import_match(doc, "t")
    card = replay(events).scorecard()
    assert card.result is not None
    r = card.result
    assert (r.winner, r.kind, r.margin, r.method, r.text) == want
    assert (card.innings[1].target, card.innings[1].end_reason) == (50, "stopped")
    par = [e.payload for e in events if isinstance(e.payload, MatchDecided)][0]
    assert (par.kind, par.method) == ("par_score", {"D/L": "DLS", "VJD": "VJD"}[outcome["method"]])
    _assert_never_ahead_of_the_officials(events, want[4])


def test_a_revised_target_reached_in_play_is_still_computed() -> None:
    """Guard (passes on the old code too): a DLS target reached in play is a win by wickets."""
    doc = match(innings("Beta", [2] * 11 + [4], target={"runs": 25, "overs": 4}),
                {"winner": "Beta", "by": {"wickets": 10}, "method": "D/L"})
    events = import_match(doc, "t")
    assert not any(isinstance(e.payload, MatchDecided) for e in events)
    assert replay(events).scorecard().result.text == (  # type: ignore[union-attr]
        "Beta won by 10 wickets (12 balls left, DLS method)")


def test_par_score_event_is_validated_and_needs_a_chase() -> None:
    from schemas.events import EventValidationError

    with pytest.raises(EventValidationError, match="method: required"):
        MatchDecided(kind="par_score", winner="Beta", margin=3)
    with pytest.raises(EventValidationError, match="margin: required with a winner"):
        MatchDecided(kind="par_score", winner="Beta", method="DLS")
    with pytest.raises(EventValidationError, match="margin: must be null"):
        MatchDecided(kind="bowl_out", winner="Beta", margin=3)
    events = import_match(plain(), "t")[:3]  # created, toss, first innings started
    early = Event(event_id="x", match_id="t", seq=4, ts=events[-1].ts, source="test",
                  payload=MatchDecided(kind="par_score", winner="Beta", margin=3, method="DLS"))
    from streams.fold import RejectedEventError

    with pytest.raises(RejectedEventError, match="needs the chase"):
        replay([*events, early])


# --- 3. every optional field of the format ---------------------------------------------------


def _set(doc: dict[str, Any], where: str, value: Any) -> None:
    """Set a field by a short path: 'info.x', 'innings.x' (the chase), 'ball.x' (its first)."""
    head, key = where.split(".", 1)
    target = {"info": doc["info"], "innings": doc["innings"][1],
              "ball": first_ball(doc), "toss": doc["info"]["toss"]}[head]
    target[key] = value


IGNORED = {  # not on the scorecard: read past, whatever they hold
    "info.officials": {"umpires": ["U One", "U Two"], "tv_umpires": ["U Three"],
                       "match_referees": ["R One"], "reserve_umpires": ["U Four"]},
    "info.supersubs": {"Alpha": "A11", "Beta": "B11"},
    "info.missing": ["reviews", {"powerplays": ["Alpha"]}],
    "info.registry": {"people": {"A1": "0a1b2c3d", "B1": "4e5f6a7b"}},
    "info.player_of_match": ["A1"],
    "info.season": "2024/25",
    "info.team_type": "club",
    "info.match_type_number": 1234,
    "info.bowl_out": [{"bowler": "A1", "outcome": "hit"}],
    "toss.uncontested": True,
    "innings.powerplays": [{"from": 0.1, "to": 1.6, "type": "mandatory"}],
    "innings.miscounted_overs": {"2": {"balls": 7, "umpire": "U One"}},
    "ball.review": {"by": "Alpha", "umpire": "U One", "batter": "B1", "decision": "struck down",
                    "type": "wicket", "umpires_call": True},
}


@pytest.mark.parametrize("where", IGNORED)
def test_optional_fields_not_on_the_card_are_read_past(where: str) -> None:
    """Pass on the old code too (it ignored them); kept so the shape checks never reject them."""
    doc = plain()
    _set(doc, where, IGNORED[where])
    assert card_of(doc) == card_of(plain())


@pytest.mark.parametrize(("where", "value"), [
    ("info.season", 2024),
    ("ball.review", {"by": "Alpha", "batter": "B1", "decision": "upheld"}),  # no umpire
    ("ball.review", {"by": "Alpha", "umpire": "U", "batter": "B1", "decision": "overturned"}),
])
def test_optional_fields_in_other_shapes_do_not_crash(where: str, value: Any) -> None:
    """A review the event cannot hold fails on the old code (KeyError 'umpire' / validation)."""
    doc = plain()
    _set(doc, where, value)
    assert card_of(doc) == card_of(plain())


def test_fielders_without_name_and_non_boundary_runs() -> None:
    doc = plain()
    ball = first_ball(doc)
    ball["runs"] = {"batter": 4, "extras": 0, "total": 4, "non_boundary": True}
    ball["wickets"] = [{"kind": "caught", "player_out": "B1", "fielders": [{"substitute": True}]}]
    card = card_of(doc)
    b1 = card.innings[1].batting[0]
    assert (b1.name, b1.fours, b1.dismissal) == ("B1", 0, "c ? b A11")
    assert card.innings[1].runs == 33


def test_penalty_runs_on_a_ball_and_for_the_innings_count() -> None:
    doc = plain()
    ball = first_ball(doc)
    ball["extras"] = {"penalty": 5}
    ball["runs"] = {"batter": 1, "extras": 5, "total": 6}
    doc["innings"][1]["penalty_runs"] = {"pre": 5, "post": 5}
    doc["info"]["outcome"] = {"winner": "Alpha", "by": {"runs": 15}}
    card = card_of(doc)
    assert (card.innings[1].runs, card.innings[1].extras.penalty) == (45, 15)
    assert card.result.text == "Alpha won by 15 runs"  # type: ignore[union-attr]


def test_absent_hurt_leaves_the_side_all_out() -> None:
    """Law 13.3: 9 down and the last batter absent hurt is all out, not 'stopped'.
    Fails on the old code (end reason 'stopped')."""
    balls: list[Ball] = ["W"] * 9 + [1] * 3
    doc = match(innings("Beta", balls, absent_hurt=["B11"]),
                {"winner": "Alpha", "by": {"runs": 57}})
    card = card_of(doc)
    assert (card.innings[1].wickets, card.innings[1].end_reason) == (9, "all_out")
    assert card.result.text == "Alpha won by 57 runs"  # type: ignore[union-attr]


def test_declared_innings_ends_as_declared() -> None:
    """Law 15.1. Fails on the old code (end reason 'stopped')."""
    doc = plain()
    doc["innings"][0] = innings("Alpha", [2] * 20, declared=True)
    doc["info"]["outcome"] = {"winner": "Alpha", "by": {"runs": 10}}
    card = card_of(doc)
    assert (card.innings[0].runs, card.innings[0].end_reason) == (40, "declared")
    assert card.result.text == "Alpha won by 10 runs"  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "path", "reason"), [
    (lambda d: d["innings"][1].update(forfeited=True, overs=[]), "innings[1].forfeited",
     "forfeited innings is not supported"),
    (lambda d: d["info"]["outcome"].update(by={"innings": 1, "runs": 30}),
     "info.outcome.by.innings", "win by an innings"),
    (lambda d: d["info"].pop("overs"), "info", "only limited-overs matches"),
    (lambda d: d["innings"].extend([innings("Alpha", [1]), innings("Beta", [1])]),
     "innings[2]", "second innings for a side"),
    (lambda d: d["info"]["outcome"].update(result="draw"), "info.outcome.result",
     "not a limited-overs result"),
    (lambda d: d["info"].update(outcome={"winner": "Alpha", "method": "Lost fewer wickets"}),
     "info.outcome.method", "not supported"),
    (lambda d: first_ball(d).update(extras={"bonus": 2}, runs={"batter": 0, "extras": 2,
                                                               "total": 2}),
     "innings[1].overs[0].deliveries[0].extras", "unknown key 'bonus'"),
    (lambda d: first_ball(d).update(runs={"batter": 1, "extras": 0, "total": 3}),
     "innings[1].overs[0].deliveries[0].runs", "do not make total 3"),
])
def test_fields_that_change_the_score_are_honoured_or_rejected(
        change: Any, path: str, reason: str) -> None:
    """All fail on the old code: it imported these silently or raised a bare KeyError/TypeError."""
    doc = plain()
    change(doc)
    with pytest.raises(CricsheetError) as info:
        import_match(doc, "t")
    assert (info.value.path, info.value.file) == (path, "match t")
    assert reason in info.value.reason


# --- 4. malformed files name the file, the JSON path and the reason --------------------------


@pytest.mark.parametrize(("change", "path", "reason"), [
    (lambda d: d["innings"][1]["overs"][0]["deliveries"][2].update(
        replacements={"role": [{"out": "B5", "reason": "injury", "role": "bowler"}]}),
     "innings[1].overs[0].deliveries[2].replacements.role[0]", "'in' missing"),
    (lambda d: d["innings"][0]["overs"][3]["deliveries"][1].pop("batter"),
     "innings[0].overs[3].deliveries[1]", "'batter' missing"),
    (lambda d: first_ball(d)["runs"].update(batter="4"),
     "innings[1].overs[0].deliveries[0].runs.batter", "must be an integer, got a string"),
    (lambda d: first_ball(d).update(wickets=[{"kind": "bodyline", "player_out": "B1"}]),
     "innings[1].overs[0].deliveries[0].wickets[0]", "kind: must be one of"),
    (lambda d: first_ball(d).update(non_striker=first_ball(d)["batter"]),
     "innings[1].overs[0].deliveries[0]", "non_striker: must differ from batter"),
    (lambda d: d["innings"][1].update(target={"runs": "lots", "overs": 5}),
     "innings[1].target.runs", "must be an integer"),
    (lambda d: d["innings"][1].update(team="Gamma"), "innings[1].team", "not one of the teams"),
    (lambda d: d["info"].pop("teams"), "info", "'teams' missing"),
    (lambda d: d["info"].update(dates=["1 May"]), "info.dates[0]", "Invalid isoformat"),
    (lambda d: d["info"]["toss"].update(decision="bowl"), "info.toss",
     "decision: must be one of"),
    (lambda d: d.update(innings={"team": "Alpha"}), "innings", "must be an array"),
])
def test_malformed_file_errors_name_file_path_and_reason(
        tmp_path: Path, change: Any, path: str, reason: str) -> None:
    """All fail on the old code: bare KeyError/TypeError, or an error with no path."""
    doc = plain()
    change(doc)
    file = write(tmp_path, doc)
    with pytest.raises(CricsheetError) as info:
        import_match(load(file), "1234")
    err = info.value
    assert (err.file, err.path) == (str(file), path)
    assert reason in err.reason
    assert str(err) == f"{file}: {path}: {err.reason}"


def test_scorecard_command_prints_the_error_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stumpcast.cli import main

    doc = plain()
    doc["innings"][1]["overs"][0]["deliveries"][2]["replacements"] = {
        "role": [{"out": "B5", "reason": "injury", "role": "bowler"}]}
    file = write(tmp_path, doc)
    assert main(["scorecard", str(file)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"stumpcast scorecard: {file}: innings[1].overs[0].deliveries[2]"
                           ".replacements.role[0]: 'in' missing")
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["scorecard", str(tmp_path / "bad.json")]) == 1
    assert f"{tmp_path / 'bad.json'}: not valid JSON" in capsys.readouterr().err


def test_a_file_that_imports_has_no_revision_or_decision_it_does_not_need() -> None:
    """The plain match: everything computed from the balls (Law 16), nothing declared."""
    events = import_match(plain(), "t")
    assert not any(isinstance(e.payload, MatchDecided | TargetRevised) for e in events)
    ended = [e.payload.reason for e in events if isinstance(e.payload, InningsEnded)]
    assert ended == ["overs_complete", "overs_complete"]
