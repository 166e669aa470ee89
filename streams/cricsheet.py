"""Import a Cricsheet JSON match (https://cricsheet.org/format/json/) as a stream of events.

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.

The importer turns recorded balls into the events a live scorer would have sent, with realistic
timestamps: a ball every 35-45 s (deterministic from a seed), a break between overs, an interval
between innings. It never copies Cricsheet's declared outcome when the result can be computed
from the balls; only outcomes decided off the field (no result, awarded, bowl-out, boundary
count after a tied super over) become :class:`~schemas.events.MatchDecided` events. Revised
targets become :class:`~schemas.events.TargetRevised`, innings-level penalty runs become
:class:`~schemas.events.PenaltyAwarded`. Everything here is pure except :func:`load`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from schemas.events import (
    Delivery,
    Event,
    Extras,
    Fielder,
    InningsEnded,
    InningsStarted,
    MatchCreated,
    MatchDecided,
    Payload,
    PenaltyAwarded,
    Replacement,
    Review,
    Squad,
    TargetRevised,
    Toss,
    Wicket,
)
from streams import rules

SOURCE = "cricsheet"
_NAMESPACE = uuid.UUID("5d6f0c84-8f0e-4d55-9a1e-2f1c2b4e6a10")
_NO_WICKET = ("retired hurt", "retired not out")


class CricsheetError(ValueError):
    """The file cannot be represented as a stream (an unsupported outcome or shape)."""


def load(path: Path) -> dict[str, Any]:
    """Read one Cricsheet JSON file (the only I/O in this module)."""
    doc = orjson.loads(path.read_bytes())
    if not isinstance(doc, dict) or "info" not in doc:
        raise CricsheetError(f"{path}: not a Cricsheet match file")
    return doc


def default_start(doc: dict[str, Any]) -> dt.datetime:
    """14:00 UTC (19:30 IST, an IPL evening start) on the match's first day."""
    day = dt.date.fromisoformat(doc["info"]["dates"][0])
    return dt.datetime(day.year, day.month, day.day, 14, 0, tzinfo=dt.UTC)


def import_match(doc: dict[str, Any], match_id: str, start: dt.datetime | None = None,
                 seed: int = 0) -> list[Event]:
    """The match as events, ``seq`` from 1. Deterministic for a given ``seed``."""
    clock = _Clock(start or default_start(doc), random.Random(f"{seed}:{match_id}"))
    payloads = list(_payloads(doc, clock))
    return [
        Event(event_id=str(uuid.uuid5(_NAMESPACE, f"{match_id}:{seq}")), match_id=match_id,
              seq=seq, ts=ts, source=SOURCE, payload=payload)
        for seq, (ts, payload) in enumerate(payloads, start=1)
    ]


class _Clock:
    """Match time: a ball every 35-45 s, a break between overs, an interval between innings."""

    def __init__(self, start: dt.datetime, rng: random.Random) -> None:
        self.now = start
        self.rng = rng

    def at(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now

    def ball(self) -> dt.datetime:
        return self.at(self.rng.uniform(35.0, 45.0))

    def over_break(self) -> dt.datetime:
        return self.at(self.rng.uniform(50.0, 80.0))


@dataclass
class _Tally:
    """What the importer must know about an innings to close it honestly (from balls only)."""

    runs: int = 0
    wickets: int = 0
    legal: int = 0
    umpire_overs: int = 0
    retired_not_out: int = 0
    last_ball_runs: int = 0


Timed = tuple[dt.datetime, Payload]
InningsReason = Literal["all_out", "overs_complete", "target_reached", "stopped"]


def _payloads(doc: dict[str, Any], clock: _Clock) -> Iterator[Timed]:
    info = doc["info"]
    teams: list[str] = info["teams"]
    yield clock.at(-3600), _match_created(info)
    yield clock.at(1800), Toss(winner=info["toss"]["winner"], decision=info["toss"]["decision"])
    clock.at(1800)
    innings = doc.get("innings", [])
    decided = _decided(info["outcome"], innings, info.get("balls_per_over", 6))
    tallies: list[_Tally] = []
    for number, inn in enumerate(innings, start=1):
        last = number == len(innings)
        if number > 1:
            clock.at(600 if inn.get("super_over") else 1200)  # innings interval (Law 11.4)
        yield from _innings(info, teams, number, inn, tallies, clock,
                            decided if last and decided and decided.kind in _BEFORE_CLOSE
                            else None)
    if decided and (not innings or decided.kind not in _BEFORE_CLOSE):
        yield clock.at(300), decided


# Outcomes that end a match while an innings is open are announced before it is closed, so the
# card never shows a computed result the officials did not give.
_BEFORE_CLOSE = ("no_result", "abandoned", "awarded")


def _match_created(info: dict[str, Any]) -> MatchCreated:
    event = info.get("event", {})
    stage = event.get("stage") or (f"Match {event['match_number']}"
                                   if "match_number" in event else None)
    return MatchCreated(
        teams=tuple(info["teams"]),
        squads=tuple(Squad(team=t, players=tuple(info["players"][t])) for t in info["teams"]),
        overs=int(info["overs"]), balls_per_over=int(info.get("balls_per_over", 6)),
        venue=info["venue"], competition=event.get("name") or info.get("match_type", "match"),
        city=info.get("city"), stage=stage)


def _innings(info: dict[str, Any], teams: list[str], number: int, inn: dict[str, Any],
             tallies: list[_Tally], clock: _Clock, decided: MatchDecided | None
             ) -> Iterator[Timed]:
    batting = inn["team"]
    bowling = teams[1] if batting == teams[0] else teams[0]
    super_over = bool(inn.get("super_over", False))
    bpo = int(info.get("balls_per_over", 6))
    yield clock.at(0), InningsStarted(innings=number, batting_team=batting, bowling_team=bowling,
                                      super_over=super_over)
    tally = _Tally()
    tallies.append(tally)
    penalties = inn.get("penalty_runs", {})
    if penalties.get("pre"):
        yield clock.at(30), PenaltyAwarded(innings=number, team=batting,
                                           runs=penalties["pre"], reason="pre")
        tally.runs += penalties["pre"]
    revised = _revised_target(info, number, inn, tallies)
    stopped = revised is not None and _stopped(inn, tally, revised, super_over, bpo)
    if revised and not stopped:
        yield clock.at(30), revised
    yield from _deliveries(number, inn, tally, clock, bpo)
    if penalties.get("post"):
        yield clock.at(30), PenaltyAwarded(innings=number, team=batting,
                                           runs=penalties["post"], reason="post")
        tally.runs += penalties["post"]
    if revised and stopped:
        yield clock.at(60), revised
    if decided:
        yield clock.at(300), decided
    yield clock.at(30), InningsEnded(innings=number,
                                     reason=_end_reason(info, inn, tallies, super_over, bpo))


def _revised_target(info: dict[str, Any], number: int, inn: dict[str, Any],
                    tallies: list[_Tally]) -> TargetRevised | None:
    """A target other than the one the balls imply (Law 16) was set by the officials (DLS)."""
    target = inn.get("target")
    if not target or number == 1:
        return None
    bpo = int(info.get("balls_per_over", 6))
    runs, balls = int(target["runs"]), _overs_to_balls(target["overs"], bpo)
    natural_balls = bpo if inn.get("super_over") else int(info["overs"]) * bpo
    natural_runs = tallies[-2].runs + 1
    if runs == natural_runs and balls == natural_balls:
        return None
    return TargetRevised(innings=number, runs=runs, balls=balls)


def _overs_to_balls(overs: float | int, bpo: int) -> int:
    whole = int(overs)
    return whole * bpo + round((overs - whole) * 10)


def _stopped(inn: dict[str, Any], tally: _Tally, revised: TargetRevised, super_over: bool,
             bpo: int) -> bool:
    """True when the revised chase ended early: the revision is then the par at the stop."""
    probe = _Tally()
    for ov in inn.get("overs", []):
        for ball in ov["deliveries"]:
            _count(probe, ball)
    _close_overs(probe, inn.get("overs", []), bpo)
    return _reason(probe, tally.runs, revised.runs, revised.balls, super_over, bpo) == "stopped"


def _count(tally: _Tally, ball: dict[str, Any]) -> None:
    extras = ball.get("extras", {})
    tally.runs += ball["runs"]["total"]
    tally.last_ball_runs = ball["runs"]["total"]
    if not ("wides" in extras or "noballs" in extras):
        tally.legal += 1
    for w in ball.get("wickets", []):
        if w["kind"] in _NO_WICKET:
            tally.retired_not_out += 1
        else:
            tally.wickets += 1


def _close_overs(tally: _Tally, overs: list[dict[str, Any]], bpo: int) -> None:
    """Law 17.5: the over as the umpire counted it stands, so count over blocks, not balls."""
    if not overs:
        return
    last = overs[-1]["deliveries"]
    last_legal = sum(1 for b in last if not ({"wides", "noballs"} & b.get("extras", {}).keys()))
    tally.umpire_overs = len(overs) - (0 if last_legal >= bpo else 1)


def _deliveries(number: int, inn: dict[str, Any], tally: _Tally, clock: _Clock,
                bpo: int) -> Iterator[Timed]:
    overs = inn.get("overs", [])
    for i, ov in enumerate(overs):
        if i:
            clock.over_break()
        for k, ball in enumerate(ov["deliveries"], start=1):
            _count(tally, ball)
            yield clock.ball(), _delivery(number, ov["over"], k, ball)
    _close_overs(tally, overs, bpo)


def _delivery(number: int, over: int, k: int, ball: dict[str, Any]) -> Delivery:
    extras = ball.get("extras", {})
    review = ball.get("review")
    return Delivery(
        innings=number, over=over, ball=k, bowler=ball["bowler"], batter=ball["batter"],
        non_striker=ball["non_striker"], runs_batter=ball["runs"]["batter"],
        non_boundary=bool(ball["runs"].get("non_boundary", False)),
        extras=Extras(**{k2: extras[k2] for k2 in extras}) if extras else Extras(),
        wickets=tuple(
            Wicket(kind=w["kind"], player_out=w["player_out"],
                   fielders=tuple(Fielder(name=f["name"], substitute=bool(f.get("substitute")))
                                  for f in w.get("fielders", []) if "name" in f))
            for w in ball.get("wickets", [])),
        review=Review(by=review["by"], umpire=review["umpire"], batter=review["batter"],
                      decision=review["decision"],
                      umpires_call=bool(review.get("umpires_call"))) if review else None,
        replacements=_replacements(ball.get("replacements", {})),
    )


def _replacements(raw: dict[str, list[dict[str, Any]]]) -> tuple[Replacement, ...]:
    out = [Replacement(scope="match", reason=r["reason"], player_in=r["in"],
                       player_out=r["out"], team=r["team"]) for r in raw.get("match", [])]
    out += [Replacement(scope="role", reason=r["reason"], player_in=r["in"], player_out=r["out"],
                        role=r["role"]) for r in raw.get("role", [])]
    return tuple(out)


def _end_reason(info: dict[str, Any], inn: dict[str, Any], tallies: list[_Tally],
                super_over: bool, bpo: int) -> InningsReason:
    """Why the innings closed, judged from the balls as the scorers would see it."""
    target = inn.get("target")
    allotted = (_overs_to_balls(target["overs"], bpo) if target
                else bpo if super_over else int(info["overs"]) * bpo)
    return _reason(tallies[-1], 0, int(target["runs"]) if target else None, allotted,
                   super_over, bpo)


def _reason(tally: _Tally, extra_runs: int, target: int | None, allotted: int,
            super_over: bool, bpo: int) -> InningsReason:
    runs = tally.runs + extra_runs
    if target is not None and runs >= target:
        # Reached on the last ball: a chase won in play. Already past it before the last ball:
        # the target is a par set after play stopped (DLS), so the innings was stopped.
        return "target_reached" if runs - tally.last_ball_runs < target else "stopped"
    if tally.wickets >= rules.wickets_limit(super_over):
        return "all_out"
    if tally.legal >= allotted or tally.umpire_overs * bpo >= allotted:
        return "overs_complete"
    if tally.wickets + tally.retired_not_out >= rules.wickets_limit(super_over):
        return "all_out"  # Law 25.4.2: a retired batter who cannot resume leaves the side short
    return "stopped"


def _decided(outcome: dict[str, Any], innings: list[dict[str, Any]],
             bpo: int) -> MatchDecided | None:
    """Only outcomes that the balls cannot decide; every other result is left to the fold."""
    if outcome.get("result") == "no result":
        return MatchDecided(kind="no_result" if innings else "abandoned")
    if outcome.get("method") == "Awarded":
        return MatchDecided(kind="awarded", winner=outcome["winner"])
    if outcome.get("bowl_out"):
        return MatchDecided(kind="bowl_out", winner=outcome["bowl_out"])
    if outcome.get("eliminator"):
        supers = [inn for inn in innings if inn.get("super_over")]
        if len(supers) < 2:
            raise CricsheetError("a super-over winner with no super-over balls")
        if _runs(supers[-2]) == _runs(supers[-1]):  # the last super over tied: boundary count
            return MatchDecided(kind="boundary_count", winner=outcome["eliminator"])
    return None


def _runs(inn: dict[str, Any]) -> int:
    pen = inn.get("penalty_runs", {})
    return (sum(b["runs"]["total"] for ov in inn.get("overs", []) for b in ov["deliveries"])
            + pen.get("pre", 0) + pen.get("post", 0))
