"""Milestone notifications, derived purely from (state, card before, card after, event).

``derive`` compares two scorecard documents (``schemas.scorecard``'s JSON shape) around one
event and returns what happened: wickets, fours, sixes, fifties, hundreds, five-wicket hauls,
hat-tricks, innings ends, targets and the result. No I/O, no clock: the ball's own timestamp is
the notification's ``ts``, and ids are deterministic (``{match}:{seq}:{kind}:{subject}``), so a
replay of the same events derives byte-identical notifications.

``NotifyState`` is what derivation needs beyond the cards: the notifications each event caused
(so a correction can retract them), each bowler's run of consecutive wicket-taking balls and a
ledger of the balls as they now stand (hat-tricks: a correction anywhere in a hat-trick's three
balls re-derives them, retracting one that no longer stands and announcing one that now does).
It is rebuilt by replaying the match, like the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.codec import format_ts
from schemas.events import Delivery, DeliveryCorrected, DeliveryVoided, Event
from schemas.notifications import Kind, Notification, Priority, retraction
from streams import rules

Doc = Mapping[str, Any]

PRIORITY: dict[Kind, Priority] = {
    Kind.WICKET: Priority.P1, Kind.HAT_TRICK: Priority.P1, Kind.RESULT: Priority.P1,
    Kind.FOUR: Priority.P2, Kind.SIX: Priority.P2, Kind.FIFTY: Priority.P2,
    Kind.HUNDRED: Priority.P2, Kind.FIVE_WICKETS: Priority.P2, Kind.INNINGS_END: Priority.P2,
    Kind.TARGET_SET: Priority.P2,
}


@dataclass(frozen=True)
class NotifyState:
    caused: Mapping[int, tuple[Notification, ...]] = field(default_factory=dict)
    # ball seq -> the live notifications about that ball (a correction's go to its target)
    by_ball: Mapping[int, tuple[Notification, ...]] = field(default_factory=dict)
    streaks: Mapping[str, int] = field(default_factory=dict)  # bowler -> consecutive wickets
    # ball seq -> (bowler, legal, wicket credited to the bowler), corrections applied
    ledger: Mapping[int, tuple[str, bool, bool]] = field(default_factory=dict)
    hat_tricks: Mapping[tuple[str, int], Notification] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ball:
    """Where the event happened, for the notification's text and fields."""

    event: Event
    innings: int
    over: str

    def note(self, kind: Kind, subject: str, text: str) -> Notification:
        e = self.event
        return Notification(id=f"{e.match_id}:{e.seq}:{kind.value}:{subject}",
                            match_id=e.match_id, kind=kind, priority=PRIORITY[kind],
                            ts=format_ts(e.ts), seq=e.seq, innings=self.innings,
                            over=self.over, text=text)


def _current(doc: Doc | None) -> Doc | None:
    innings = (doc or {}).get("innings") or []
    return innings[-1] if innings else None


def _where(event: Event, after: Doc) -> _Ball:
    inn = _current(after)
    return _Ball(event, inn["number"] if inn else 0, inn["overs"] if inn else "0.0")


def _lines(inn: Doc | None, key: str) -> dict[str, Doc]:
    return {line["name"]: line for line in (inn or {}).get(key, [])}


def _innings_by_number(doc: Doc | None) -> dict[int, Doc]:
    return {i["number"]: i for i in (doc or {}).get("innings") or []}


def _delivery_of(event: Event) -> Delivery | None:
    p = event.payload
    if isinstance(p, Delivery):
        return p
    if isinstance(p, DeliveryCorrected):
        return p.delivery
    return None


def _ball_notes(ball: _Ball, d: Delivery) -> list[Notification]:
    out = [ball.note(Kind.WICKET, w.player_out, f"WICKET! {w.player_out} out, {w.kind}"
                     + (f" (b {d.bowler})" if rules.bowler_credited(w) else ""))
           for w in d.wickets if rules.counts_as_wicket(w)]
    if rules.is_four(d):
        out.append(ball.note(Kind.FOUR, d.batter, f"FOUR! {d.batter} off {d.bowler}"))
    if rules.is_six(d):
        out.append(ball.note(Kind.SIX, d.batter, f"SIX! {d.batter} off {d.bowler}"))
    return out


def _milestones(ball: _Ball, before: Doc | None, after: Doc) -> list[Notification]:
    out: list[Notification] = []
    old_inns = _innings_by_number(before)
    for number, inn in _innings_by_number(after).items():
        old = old_inns.get(number)
        old_bat, old_bowl = _lines(old, "batting"), _lines(old, "bowling")
        for name, line in _lines(inn, "batting").items():
            was = old_bat.get(name, {}).get("runs", 0)
            for mark, kind in ((50, Kind.FIFTY), (100, Kind.HUNDRED)):
                if was < mark <= line["runs"]:
                    out.append(ball.note(kind, name, f"{kind.value.upper()}! {name} reaches "
                                         f"{line['runs']} off {line['balls']} balls"))
        for name, line in _lines(inn, "bowling").items():
            if old_bowl.get(name, {}).get("wickets", 0) < 5 <= line["wickets"]:
                out.append(ball.note(Kind.FIVE_WICKETS, name,
                                     f"Five-wicket haul for {name}: {line['wickets']}/"
                                     f"{line['runs']}"))
        out += _innings_changes(ball, number, old, inn)
    return out


def _innings_changes(ball: _Ball, number: int, old: Doc | None,
                     inn: Doc) -> list[Notification]:
    out: list[Notification] = []
    if inn.get("ended") and not (old or {}).get("ended"):
        out.append(ball.note(Kind.INNINGS_END, str(number),
                             f"Innings {number} ends: {inn['batting_team']} "
                             f"{inn['runs']}/{inn['wickets']} ({inn['overs']} ov)"))
    target = inn.get("target")
    if target is not None and (old is None or old.get("target") != target):
        out.append(ball.note(Kind.TARGET_SET, f"{number}:{target}",
                             f"{inn['batting_team']} need {target} to win"
                             + (f" from {inn['target_balls']} balls"
                                if inn.get("target_balls") else "")))
    return out


def _result(ball: _Ball, before: Doc | None, after: Doc) -> list[Notification]:
    result = after.get("result")
    if result and not (before or {}).get("result"):
        return [ball.note(Kind.RESULT, "match", str(result.get("text") or "Result"))]
    return []


def _ledger_entry(d: Delivery) -> tuple[str, bool, bool]:
    return d.bowler, rules.is_legal(d), any(rules.bowler_credited(w) for w in d.wickets)


def _hat_trick_balls(ledger: Mapping[int, tuple[str, bool, bool]]
                     ) -> tuple[set[tuple[str, int]], dict[str, int]]:
    """Every (bowler, seq of the ball completing three in a row) in the ledger, and each
    bowler's current run. Three wickets credited to the bowler on consecutive legal balls he
    bowls (counted across overs and spells); a wide or no-ball neither counts nor breaks it."""
    found: set[tuple[str, int]] = set()
    streaks: dict[str, int] = {}
    for seq in sorted(ledger):
        bowler, legal, credited = ledger[seq]
        if not legal:
            continue
        streaks[bowler] = streaks.get(bowler, 0) + 1 if credited else 0
        if credited and streaks[bowler] == 3:
            found.add((bowler, seq))
    return found, streaks


def _hat_tricks(ball: _Ball, state: NotifyState, ledger: dict[int, tuple[str, bool, bool]],
                appended: bool) -> tuple[dict[str, int], dict[tuple[str, int], Notification],
                                         list[Notification]]:
    """Hat-tricks after this ball. A new ball extends the runs; a correction rescans."""
    held = dict(state.hat_tricks)
    if appended:  # the common case, O(1): only this ball's bowler moves
        bowler, legal, credited = ledger[ball.event.seq]
        streaks = dict(state.streaks)
        if not legal:
            return streaks, held, []
        streaks[bowler] = streaks.get(bowler, 0) + 1 if credited else 0
        if not (credited and streaks[bowler] == 3):
            return streaks, held, []
        note = ball.note(Kind.HAT_TRICK, bowler, f"HAT-TRICK! {bowler}")
        held[(bowler, ball.event.seq)] = note
        return streaks, held, [note]
    found, streaks = _hat_trick_balls(ledger)
    out = [retraction(held.pop(k), format_ts(ball.event.ts), ball.event.seq)
           for k in sorted(set(held) - found)]
    for bowler, seq in sorted(found - set(held)):
        note = ball.note(Kind.HAT_TRICK, f"{bowler}@{seq}", f"HAT-TRICK! {bowler}")
        held[(bowler, seq)] = note
        out.append(note)
    return streaks, held, out


def _retractions(state: NotifyState, event: Event) -> list[Notification]:
    p = event.payload
    if not isinstance(p, DeliveryVoided | DeliveryCorrected):
        return []
    return [retraction(n, format_ts(event.ts), event.seq)
            for n in state.by_ball.get(p.target_seq, ())]


def derive(state: NotifyState, before: Doc | None, after: Doc,
           event: Event) -> tuple[NotifyState, list[Notification]]:
    """The notifications ``event`` causes, and the state to derive the next event's from."""
    ball = _where(event, after)
    notes = _retractions(state, event)
    streaks, ledger, held = state.streaks, state.ledger, state.hat_tricks
    d = _delivery_of(event)
    target = getattr(event.payload, "target_seq", None)
    if d is not None:
        notes += _ball_notes(ball, d)
    if d is not None or target is not None:
        ledger = dict(ledger)
        if d is not None:
            ledger[event.seq if target is None else target] = _ledger_entry(d)
        elif target is not None:
            ledger.pop(target, None)  # voided
        streaks, held, hat = _hat_tricks(ball, state, ledger, appended=target is None)
        notes += hat
    notes += _milestones(ball, before, after) + _result(ball, before, after)
    caused, by_ball = dict(state.caused), dict(state.by_ball)
    if notes:
        caused[event.seq] = tuple(notes)
    # Hat-tricks span three balls: they are retracted by the rescan, not with one ball.
    fresh = tuple(n for n in notes if n.kind not in (Kind.RETRACTION, Kind.HAT_TRICK))
    if target is not None:
        by_ball[target] = fresh  # the old ones are retracted above
    elif fresh:
        by_ball[event.seq] = fresh
    return replace(state, caused=caused, by_ball=by_ball, streaks=streaks, ledger=ledger,
                   hat_tricks=held), notes
