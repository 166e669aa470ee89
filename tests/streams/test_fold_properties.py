"""Properties of the fold, on real matches and on random streams (hypothesis):

* duplicates, in any order, are absorbed; a gap is a typed outcome and changes nothing;
* a correction gives the same card as folding the corrected stream from the start;
* ``apply`` is observably pure: the input card never changes, even when branched;
* a card never shows negative or impossible values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    Delivery,
    DeliveryCorrected,
    DeliveryVoided,
    Event,
    Extras,
    InningsEnded,
    InningsStarted,
    MatchCreated,
    Payload,
    Squad,
    Toss,
    Wicket,
)
from streams.fold import (
    Applied,
    Card,
    DuplicateEvent,
    FoldRejected,
    RejectedEventError,
    SequenceConflict,
    SequenceGap,
    SequenceGapError,
    apply,
    check_sequence,
    replay,
    step,
)
from tests.streams.cricsheet_data import events

STEMS = ["1216517", "1370353", "1298152", "1082628", "1304047", "287862", "1384634"]
TS = dt.datetime(2023, 4, 1, 14, tzinfo=dt.UTC)
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def doc(card: Card) -> dict[str, Any]:
    out = card.scorecard().to_json()
    out.pop("seq")
    return out


def renumber(payloads: list[Payload], match_id: str = "m") -> list[Event]:
    return [Event(event_id=f"{match_id}:{i}", match_id=match_id, seq=i, ts=TS, source="test",
                  payload=p) for i, p in enumerate(payloads, start=1)]


# --- sequence discipline -------------------------------------------------------------------------


@FAST
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_duplicates_in_any_order_are_absorbed(stem: str, data: st.DataObject) -> None:
    stream = list(events(stem))
    noisy: list[Event] = []
    for i, event in enumerate(stream):
        noisy.append(event)
        if data.draw(st.integers(0, 9)) == 0:  # now and then, replay a burst of old events
            noisy += data.draw(st.lists(st.sampled_from(stream[: i + 1]), max_size=4))
    card = Card.empty()
    for event in noisy:
        outcome = step(card, event)
        assert isinstance(outcome, Applied | DuplicateEvent), outcome
        if isinstance(outcome, Applied):
            card = outcome.card
    assert card.seq == len(stream)
    assert doc(card) == doc(replay(stream))


@FAST
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_a_gap_is_typed_and_changes_nothing(stem: str, data: st.DataObject) -> None:
    stream = list(events(stem))
    at = data.draw(st.integers(1, len(stream) - 2))
    card = replay(stream[:at])
    before = doc(card)
    ahead = stream[data.draw(st.integers(at + 1, len(stream) - 1))]
    assert step(card, ahead) == SequenceGap(expected=at + 1, got=ahead.seq)
    with pytest.raises(SequenceGapError):
        apply(card, ahead)
    assert doc(card) == before and card.seq == at


def test_conflicting_event_at_an_accepted_seq_is_rejected() -> None:
    stream = list(events("1304047"))
    card = replay(stream[:50])
    impostor = dataclasses.replace(stream[20], event_id="someone-else")
    outcome = step(card, impostor)
    assert isinstance(outcome, FoldRejected) and "already holds" in outcome.reason
    assert outcome == SequenceConflict(21, outcome.reason, "someone-else", stream[20].event_id)
    with pytest.raises(RejectedEventError):
        apply(card, impostor)
    assert step(card, stream[20]) == DuplicateEvent(21, stream[20].event_id)
    assert card.event_id(21) == stream[20].event_id and card.event_id(51) is None


def test_check_sequence_decides_next_duplicate_gap_and_conflict() -> None:
    e = list(events("1304047"))[9]  # seq 10
    assert check_sequence(9, e, None) is None
    assert check_sequence(7, e, None) == SequenceGap(expected=8, got=10)
    assert check_sequence(12, e, e.event_id) == DuplicateEvent(10, e.event_id)
    assert check_sequence(7, e, e.event_id) == DuplicateEvent(10, e.event_id)  # held ahead
    conflict = check_sequence(7, e, "held-first")
    assert isinstance(conflict, SequenceConflict) and conflict.accepted_id == "held-first"
    with pytest.raises(ValueError, match="unknown"):  # never guessed to be a duplicate
        check_sequence(12, e, None)


def test_events_that_contradict_the_match_are_rejected() -> None:
    stream = list(events("1304047"))
    first_ball = next(i for i, e in enumerate(stream) if isinstance(e.payload, Delivery))
    card = replay(stream[: first_ball - 1])  # innings not started yet
    early = dataclasses.replace(stream[first_ball], seq=card.seq + 1)
    assert isinstance(step(card, early), FoldRejected)
    other = dataclasses.replace(stream[first_ball - 1], match_id="another")
    assert isinstance(step(card, other), FoldRejected)
    assert isinstance(step(Card.empty(), dataclasses.replace(stream[1], seq=1)), FoldRejected)


# --- purity --------------------------------------------------------------------------------------


@FAST
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_apply_never_changes_its_input(stem: str, data: st.DataObject) -> None:
    stream = list(events(stem))
    at = data.draw(st.integers(5, len(stream) - 1))  # after the first ball
    base = replay(stream[:at])
    before = doc(base)
    forward = replay(stream[at:], base)  # extends the shared state in place...
    assert doc(base) == before and base.seq == at  # ...yet the old card is unchanged
    branch = apply(base, _correction(stream, at, base.seq + 1))
    assert doc(base) == before
    assert doc(forward) == doc(replay(stream))
    assert branch.seq == at + 1


def _correction(stream: list[Event], at: int, seq: int) -> Event:
    target = next(e for e in reversed(stream[:at]) if isinstance(e.payload, Delivery))
    return Event(event_id=f"fix-{seq}", match_id=target.match_id, seq=seq, ts=TS,
                 source="test", payload=DeliveryVoided(target_seq=target.seq))


# --- corrections ---------------------------------------------------------------------------------


def _alternative(d: Delivery, choice: int) -> Delivery:
    """A different, valid version of the same ball."""
    if choice == 0:
        return dataclasses.replace(d, runs_batter=(d.runs_batter + 1) % 7, non_boundary=False,
                                   extras=dataclasses.replace(d.extras, wides=0))
    if choice == 1:
        return dataclasses.replace(d, runs_batter=0, extras=Extras(wides=1), wickets=())
    return dataclasses.replace(d, runs_batter=0, extras=Extras(legbyes=2))


@FAST
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_corrections_equal_folding_the_corrected_stream(stem: str, data: st.DataObject) -> None:
    stream = [e.payload for e in events(stem)]
    balls = [i for i, p in enumerate(stream) if isinstance(p, Delivery)]
    picked = data.draw(st.lists(st.sampled_from(balls), min_size=1, max_size=4, unique=True))
    fixes: dict[int, Delivery | None] = {}
    for i in picked:
        choice = data.draw(st.integers(0, 3))
        fixes[i] = None if choice == 3 else _alternative(stream[i], choice)  # type: ignore[arg-type]
    # The truth: the stream as if every fixed ball had been right from the start.
    truth = [fixes.get(i, p) for i, p in enumerate(stream) if fixes.get(i, p) is not None]
    expected = doc(replay(renumber(truth)))  # type: ignore[arg-type]
    # The live stream: the wrong balls, then corrections at random later points.
    live: list[Payload | tuple[int, Delivery | None]] = list(stream)
    for i, fix in fixes.items():
        live.insert(data.draw(st.integers(live.index(stream[i]) + 1, len(live))), (i, fix))
    seq_of = {id(p): n for n, p in enumerate(live, start=1)}
    payloads = [p if not isinstance(p, tuple) else
                (DeliveryVoided(target_seq=seq_of[id(stream[p[0]])]) if p[1] is None else
                 DeliveryCorrected(target_seq=seq_of[id(stream[p[0]])], delivery=p[1]))
                for p in live]
    assert doc(replay(renumber(payloads))) == expected


# --- invariants on random streams ----------------------------------------------------------------

PLAYERS = tuple(f"P{i}" for i in range(12))


@st.composite
def random_ball(draw: st.DrawFn, innings: int, over: int, ball: int) -> Delivery:
    a, b = draw(st.lists(st.sampled_from(PLAYERS), min_size=2, max_size=2, unique=True))
    kind = draw(st.sampled_from(["", "", "", "wides", "noballs", "byes", "legbyes"]))
    extras = Extras(**{kind: draw(st.integers(1, 5))}) if kind else Extras()
    wickets: tuple[Wicket, ...] = ()
    if draw(st.integers(0, 6)) == 0:
        wickets = (Wicket(kind=draw(st.sampled_from(["bowled", "run out", "retired hurt",
                                                     "caught", "stumped"])),
                          player_out=draw(st.sampled_from([a, b]))),)
    return Delivery(innings=innings, over=over, ball=ball, bowler=draw(st.sampled_from("XYZ")),
                    batter=a, non_striker=b,
                    runs_batter=0 if kind == "wides" else draw(st.integers(0, 6)),
                    extras=extras, wickets=wickets)


@st.composite
def random_match(draw: st.DrawFn) -> list[Payload]:
    out: list[Payload] = [
        MatchCreated(teams=("A", "B"), squads=(Squad(team="A", players=PLAYERS),
                                               Squad(team="B", players=PLAYERS)),
                     overs=2, venue="V", competition="C"),
        Toss(winner="A", decision="bat")]
    for n in (1, 2):
        out.append(InningsStarted(innings=n, batting_team="AB"[n - 1], bowling_team="BA"[n - 1]))
        for k in range(draw(st.integers(0, 40))):
            out.append(draw(random_ball(n, k // 7, k % 7 + 1)))
        out.append(InningsEnded(innings=n, reason="overs_complete"))
    return out


def check_possible(card: Card) -> None:
    sc = card.scorecard()
    assert sc.seq == card.seq
    for inn in sc.innings:
        assert inn.runs >= 0 and inn.legal_balls >= 0
        assert 0 <= inn.wickets <= 10 and len(inn.fall_of_wickets) == inn.wickets
        whole, balls = map(int, inn.overs.split("."))
        assert whole >= 0 and 0 <= balls < 6
        ex = inn.extras
        assert min(ex.wides, ex.noballs, ex.byes, ex.legbyes, ex.penalty) >= 0
        assert sum(b.runs for b in inn.batting) + ex.total == inn.runs
        assert sum(b.legal_balls for b in inn.bowling) == inn.legal_balls
        assert sum(b.wickets for b in inn.bowling) <= inn.wickets
        for b in inn.batting:
            assert min(b.runs, b.balls, b.fours, b.sixes) >= 0
            assert 4 * b.fours + 6 * b.sixes <= b.runs
        for bw in inn.bowling:
            assert min(bw.runs, bw.wickets, bw.maidens, bw.legal_balls) >= 0
            assert bw.maidens * 6 <= bw.legal_balls
        for rate in (inn.run_rate, inn.required_rate):
            assert rate is None or rate >= 0
    if sc.result and sc.result.margin is not None:
        assert sc.result.margin > 0


@FAST
@given(random_match(), st.data())
def test_a_card_never_shows_impossible_values(payloads: list[Payload],
                                              data: st.DataObject) -> None:
    card = Card.empty()
    for p in payloads:
        if isinstance(p, Delivery) and data.draw(st.integers(0, 15)) == 0 and card.seq > 3:
            fix = DeliveryVoided(target_seq=data.draw(st.integers(1, card.seq)))
            outcome = step(card, renumber([fix] * (card.seq + 1))[card.seq])
            card = outcome.card if isinstance(outcome, Applied) else card
        outcome = step(card, renumber([p] * (card.seq + 1))[card.seq])
        if isinstance(outcome, Applied):  # a ball after the tenth wicket is rejected
            card = outcome.card
        check_possible(card)


def test_real_matches_never_show_impossible_values() -> None:
    for stem in STEMS:
        card = Card.empty()
        for event in events(stem):
            card = apply(card, event)
            if event.seq % 25 == 0:
                check_possible(card)
        check_possible(card)
