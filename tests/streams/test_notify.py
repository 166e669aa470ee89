"""The notification derivation, pure: real matches folded, no Kafka, no Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from schemas.events import Delivery, DeliveryCorrected, DeliveryVoided, Event, Fielder, Wicket
from schemas.notifications import Kind, Priority
from streams import cricsheet, rules
from streams.pipeline import ScorecardFolder, all_notes, replay_state
from tests.streams.cricsheet_data import DATA_DIR

DATA = DATA_DIR
FILES = sorted(DATA.glob("*.json"))[:12]


def events_of(path: Path, match_id: str = "m1") -> list[Event]:
    return cricsheet.import_match(cricsheet.load(path), match_id)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_ball_notifications_match_the_balls(path: Path) -> None:
    events = events_of(path)
    notes = all_notes(replay_state("m1", events, ScorecardFolder()))
    kinds = Counter(n.kind for n in notes)
    balls = [e.payload for e in events if isinstance(e.payload, Delivery)]
    assert kinds[Kind.FOUR] == sum(rules.is_four(d) for d in balls)
    assert kinds[Kind.SIX] == sum(rules.is_six(d) for d in balls)
    assert kinds[Kind.WICKET] == sum(rules.counts_as_wicket(w) for d in balls for w in d.wickets)
    card = replay_state("m1", events, ScorecardFolder()).doc
    assert card is not None
    assert kinds[Kind.INNINGS_END] == sum(1 for i in card["innings"] if i["ended"])
    assert kinds[Kind.RESULT] == (1 if card["result"] else 0)
    fifties = sum(1 for i in card["innings"] for b in i["batting"] if b["runs"] >= 50)
    assert kinds[Kind.FIFTY] == fifties
    assert kinds[Kind.HUNDRED] == sum(1 for i in card["innings"] for b in i["batting"]
                                      if b["runs"] >= 100)
    assert len({n.id for n in notes}) == len(notes)  # ids are unique


def test_replay_is_deterministic_and_priorities_are_set() -> None:
    events = events_of(FILES[0])
    a = all_notes(replay_state("m1", events, ScorecardFolder()))
    b = all_notes(replay_state("m1", events, ScorecardFolder()))
    assert [n.encode() for n in a] == [n.encode() for n in b]
    for n in a:
        assert n.priority is (Priority.P1 if n.kind in {Kind.WICKET, Kind.RESULT,
                                                        Kind.HAT_TRICK} else Priority.P2)
        assert n.ts.endswith("Z") and n.match_id == "m1"


def _correction(events: list[Event], target: Event, corrected: Delivery | None,
                event_id: str = "fix-1") -> Event:
    last = events[-1]
    payload = (DeliveryVoided(target_seq=target.seq) if corrected is None
               else DeliveryCorrected(target_seq=target.seq, delivery=corrected))
    return dataclasses.replace(last, event_id=event_id, seq=last.seq + 1,
                               ts=last.ts + dt.timedelta(seconds=5), payload=payload)


def _first_four_prefix(events: list[Event]) -> tuple[list[Event], Event]:
    for i, e in enumerate(events):
        if isinstance(e.payload, Delivery) and rules.is_four(e.payload):
            return events[: i + 3], e
    raise AssertionError("no four in the match")


def test_a_voided_ball_retracts_what_it_caused() -> None:
    prefix, four = _first_four_prefix(events_of(FILES[0]))
    fix = _correction(prefix, four, None)
    state = replay_state("m1", [*prefix, fix], ScorecardFolder())
    retractions = state.notify.caused[fix.seq]
    assert [r.kind for r in retractions] == [Kind.RETRACTION]
    assert retractions[0].retracts == f"m1:{four.seq}:four:{four.payload.batter}"
    assert retractions[0].seq == fix.seq


def test_a_corrected_ball_retracts_and_derives_again() -> None:
    prefix, four = _first_four_prefix(events_of(FILES[0]))
    d = four.payload
    assert isinstance(d, Delivery)
    six = dataclasses.replace(d, runs_batter=6)
    fix = _correction(prefix, four, six)
    notes = replay_state("m1", [*prefix, fix], ScorecardFolder()).notify.caused[fix.seq]
    assert [n.kind for n in notes] == [Kind.RETRACTION, Kind.SIX]
    again = _correction([*prefix, fix], four, None, "fix-2")
    state = replay_state("m1", [*prefix, fix, again], ScorecardFolder())
    retracted = state.notify.caused[again.seq]
    assert [n.kind for n in retracted] == [Kind.RETRACTION]  # the six, not the four again
    assert retracted[0].retracts == notes[1].id


def test_hat_trick_on_three_consecutive_legal_balls() -> None:
    events = events_of(FILES[0])
    start = next(i for i, e in enumerate(events) if isinstance(e.payload, Delivery))
    balls = events[start:start + 3]
    out: list[Event] = events[:start]
    batters = ["X1", "X2", "X3"]
    for e, name in zip(balls, batters, strict=True):
        d = e.payload
        assert isinstance(d, Delivery)
        out.append(dataclasses.replace(e, payload=dataclasses.replace(
            d, runs_batter=0, batter=name, extras=dataclasses.replace(d.extras, wides=0,
                                                                       noballs=0, byes=0,
                                                                       legbyes=0),
            wickets=(Wicket(kind="bowled", player_out=name),))))
    state = replay_state("m1", out, ScorecardFolder())
    kinds = [n.kind for n in all_notes(state)]
    if state.seq != len(out):
        pytest.skip("the fold refused the synthetic balls (batters not in the squad)")
    assert kinds.count(Kind.HAT_TRICK) == 1


def _hat_trick_match() -> tuple[list[Event], list[Event]]:
    """The first match with its first three balls made bowled wickets: (events, those balls)."""
    events = events_of(FILES[0])
    start = next(i for i, e in enumerate(events) if isinstance(e.payload, Delivery))
    out: list[Event] = events[:start]
    for e, name in zip(events[start:start + 3], ["X1", "X2", "X3"], strict=True):
        d = e.payload
        assert isinstance(d, Delivery)
        out.append(dataclasses.replace(e, payload=dataclasses.replace(
            d, runs_batter=0, batter=name,
            extras=dataclasses.replace(d.extras, wides=0, noballs=0, byes=0, legbyes=0),
            wickets=(Wicket(kind="bowled", player_out=name),))))
    return out, out[start:]


def _kinds(state: object, seq: int) -> list[Kind]:
    return [n.kind for n in state.notify.caused.get(seq, ())]  # type: ignore[attr-defined]


def test_voiding_a_wicket_of_a_hat_trick_retracts_it() -> None:
    events, balls = _hat_trick_match()
    before = replay_state("m1", events, ScorecardFolder())
    hat = next(n for n in all_notes(before) if n.kind is Kind.HAT_TRICK)
    fix = _correction(events, balls[0], None)  # the first of the three never happened
    state = replay_state("m1", [*events, fix], ScorecardFolder())
    assert state.seq == fix.seq
    retracted = {n.retracts for n in state.notify.caused[fix.seq]}
    assert hat.id in retracted and f"m1:{balls[0].seq}:wicket:X1" in retracted
    assert not state.notify.hat_tricks


def test_correcting_a_ball_into_a_third_wicket_announces_the_hat_trick() -> None:
    events, balls = _hat_trick_match()
    d = balls[2].payload
    assert isinstance(d, Delivery)
    dot = dataclasses.replace(balls[2], payload=dataclasses.replace(d, wickets=()))
    played = [*events[:-1], dot]
    assert Kind.HAT_TRICK not in [n.kind for n in all_notes(
        replay_state("m1", played, ScorecardFolder()))]
    fix = _correction(played, dot, d)  # the umpire's review: it was bowled after all
    state = replay_state("m1", [*played, fix], ScorecardFolder())
    assert _kinds(state, fix.seq) == [Kind.WICKET, Kind.HAT_TRICK]
    note = state.notify.caused[fix.seq][1]
    assert note.id == f"m1:{fix.seq}:hat_trick:{d.bowler}@{dot.seq}"


def test_correcting_a_hat_trick_ball_that_stays_a_wicket_keeps_it() -> None:
    events, balls = _hat_trick_match()
    d = balls[1].payload
    assert isinstance(d, Delivery)
    caught = dataclasses.replace(d, wickets=(Wicket(kind="caught", player_out="X2",
                                                    fielders=(Fielder(name=d.bowler),)),))
    fix = _correction(events, balls[1], caught)
    state = replay_state("m1", [*events, fix], ScorecardFolder())
    assert state.seq == fix.seq
    assert _kinds(state, fix.seq) == [Kind.RETRACTION, Kind.WICKET]  # the wicket's new form
    assert len(state.notify.hat_tricks) == 1
