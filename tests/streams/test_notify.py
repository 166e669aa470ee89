"""The notification derivation, pure: real matches folded, no Kafka, no Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from schemas.events import Delivery, DeliveryCorrected, DeliveryVoided, Event, Wicket
from schemas.notifications import Kind, Priority
from streams import cricsheet, rules
from streams.pipeline import ScorecardFolder, all_notes, replay_state

DATA = next((p for p in (Path(__file__).resolve().parents[3] / "shared/data/cricsheet",
                         Path("/work/shared/data/cricsheet")) if p.exists()),
            Path("/work/shared/data/cricsheet"))
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
