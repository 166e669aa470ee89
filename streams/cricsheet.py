"""Import a Cricsheet JSON match (https://cricsheet.org/format/json/) as a stream of events.

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.

The importer turns recorded balls into the events a live scorer would have sent, with realistic
timestamps: a ball every 35-45 s (deterministic from a seed), a break between overs, an interval
between innings. It never copies Cricsheet's declared outcome when the result can be computed
from the balls; only outcomes decided off the field (no result, awarded, bowl-out, boundary
count after a tied super over, a chase stopped for good and judged against a DLS/VJD par score)
become :class:`~schemas.events.MatchDecided` events. Revised targets become
:class:`~schemas.events.TargetRevised`, innings-level penalty runs become
:class:`~schemas.events.PenaltyAwarded`. Everything here is pure except :func:`load`.

Only limited-overs matches (one innings a side, plus super overs) are imported. Optional fields
the scorecard does not show (officials, registry, player_of_match, season, team_type, missing,
supersubs, the bowl-out's balls, powerplays, miscounted_overs, a review's type, ...) are read
past whatever they hold; fields that change the score are honoured or the file is rejected.

Exceptions::

    ValueError
     └── CricsheetError   the file cannot be imported: malformed, or a shape the events cannot
                          represent; ``file``, ``path`` (JSON path in the file) and ``reason``
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
    NO_EXTRAS,
    Delivery,
    Event,
    EventValidationError,
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
from streams.cricsheet_format import (
    PAR_METHODS,
    CricsheetError,
    check_shape,
    items_at,
    reading_at,
)

SOURCE = "cricsheet"
_NAMESPACE = uuid.UUID("5d6f0c84-8f0e-4d55-9a1e-2f1c2b4e6a10")
_NO_WICKET = ("retired hurt", "retired not out")
class MatchFile(dict[str, Any]):
    """A parsed Cricsheet file that remembers where it was read from, so errors can name it."""

    __slots__ = ("path",)

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        super().__init__(data)
        self.path = path


def load(path: Path) -> MatchFile:
    """Read one Cricsheet JSON file (the only I/O in this module)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CricsheetError(f"not valid JSON ({exc})", file=str(path)) from None
    if not isinstance(doc, dict) or "info" not in doc:
        raise CricsheetError("not a Cricsheet match file (no 'info' object)", file=str(path))
    return MatchFile(doc, path)


def default_start(doc: dict[str, Any]) -> dt.datetime:
    """14:00 UTC (19:30 IST, an IPL evening start) on the match's first day."""
    day = dt.date.fromisoformat(doc["info"]["dates"][0])
    return dt.datetime(day.year, day.month, day.day, 14, 0, tzinfo=dt.UTC)


def import_match(doc: dict[str, Any], match_id: str, start: dt.datetime | None = None,
                 seed: int = 0) -> list[Event]:
    """The match as events, ``seq`` from 1. Deterministic for a given ``seed``.

    Raises :class:`CricsheetError` naming the file (the one :func:`load` read, else the match
    id), the JSON path and the reason; no bare KeyError or TypeError escapes.
    """
    file = str(doc.path) if isinstance(doc, MatchFile) else f"match {match_id}"
    try:
        check_shape(doc)
        clock = _Clock(start or default_start(doc), random.Random(f"{seed}:{match_id}"))
        payloads = list(_payloads(doc, clock))
    except CricsheetError as exc:
        raise exc.in_file(file) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a shape not checked above
        raise CricsheetError(f"malformed ({type(exc).__name__}: {exc})", file=file) from exc
    return [
        Event(event_id=str(uuid.uuid5(_NAMESPACE, f"{match_id}:{seq}")), match_id=match_id,
              seq=seq, ts=ts, source=SOURCE, payload=payload)
        for seq, (ts, payload) in enumerate(payloads, start=1)
    ]


# --- events -----------------------------------------------------------------------------------


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
    absent: int = 0  # batters absent hurt: they cannot come in (Law 13.3)
    last_ball_runs: int = 0


Timed = tuple[dt.datetime, Payload]
InningsReason = Literal["all_out", "overs_complete", "target_reached", "stopped", "declared"]


def _payloads(doc: dict[str, Any], clock: _Clock) -> Iterator[Timed]:
    info = doc["info"]
    with reading_at("info"):
        created = _match_created(info)
    with reading_at("info.toss"):
        toss = Toss(winner=info["toss"]["winner"], decision=info["toss"]["decision"])
    yield clock.at(-3600), created
    yield clock.at(1800), toss
    clock.at(1800)
    innings = doc.get("innings", [])
    with reading_at("info.outcome"):
        decided = _decided(info["outcome"], innings)
        par = _par_score(info, innings)
    chase = _main(innings)[1] if par else None
    tallies: list[_Tally] = []
    for number, inn in enumerate(innings, start=1):
        closing = [par] if par and inn is chase else []
        if decided and number == len(innings) and decided.kind in _BEFORE_CLOSE:
            closing.append(decided)
        if number > 1:
            clock.at(600 if inn.get("super_over") else 1200)  # innings interval (Law 11.4)
        yield from _innings(info, number, inn, tallies, clock, closing)
    if decided and (not innings or decided.kind not in _BEFORE_CLOSE):
        yield clock.at(300), decided


# Outcomes that end a match while an innings is open are announced before it is closed, so the
# card never shows a computed result the officials did not give.
_BEFORE_CLOSE = ("no_result", "abandoned", "awarded")


def _main(innings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [inn for inn in innings if not inn.get("super_over")]


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


def _innings(info: dict[str, Any], number: int, inn: dict[str, Any], tallies: list[_Tally],
             clock: _Clock, closing: list[MatchDecided]) -> Iterator[Timed]:
    teams, batting = info["teams"], inn["team"]
    bowling = teams[1] if batting == teams[0] else teams[0]
    super_over = bool(inn.get("super_over", False))
    bpo = int(info.get("balls_per_over", 6))
    par = any(d.kind == "par_score" for d in closing)
    yield clock.at(0), InningsStarted(innings=number, batting_team=batting, bowling_team=bowling,
                                      super_over=super_over)
    tally = _Tally(absent=len(inn.get("absent_hurt", [])))
    tallies.append(tally)
    yield from _penalty(number, batting, inn, "pre", tally, clock)
    with reading_at(f"innings[{number - 1}].target"):
        revised = _revised_target(info, number, inn, tallies)
    # The revision of a chase stopped early comes after its balls: it may be the par at the
    # stop, which the chase never had as a target (the fold must not see it "reached" on the
    # last ball bowled); a par decision always means a chase stopped early.
    after = revised is not None and (par or _stopped(inn, tally, revised, super_over, bpo))
    if revised and not after:
        yield clock.at(30), revised
    yield from _deliveries(number, inn, tally, clock, bpo, super_over)
    yield from _penalty(number, batting, inn, "post", tally, clock)
    if revised and after:
        yield clock.at(60), revised
    for decided in closing:
        yield clock.at(300), decided
    reason = ("stopped" if par  # play ended for good; the par, not the balls, decided it
              else "declared" if inn.get("declared")  # Law 15.1
              else _end_reason(info, inn, tallies, super_over, bpo))
    yield clock.at(30), InningsEnded(innings=number, reason=reason)


def _penalty(number: int, team: str, inn: dict[str, Any], when: str, tally: _Tally,
             clock: _Clock) -> Iterator[Timed]:
    """Law 41.17: penalty runs awarded before the innings' first ball or after its last."""
    runs = inn.get("penalty_runs", {}).get(when)
    if runs:
        with reading_at(f"innings[{number - 1}].penalty_runs.{when}"):
            event = PenaltyAwarded(innings=number, team=team, runs=runs, reason=when)
        tally.runs += runs
        yield clock.at(30), event


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


def _probe(inn: dict[str, Any], bpo: int) -> _Tally:
    """The innings' tally from its balls alone (no penalty runs), ahead of the events."""
    probe = _Tally(absent=len(inn.get("absent_hurt", [])))
    for ov in inn.get("overs", []):
        for ball in ov["deliveries"]:
            _count(probe, ball)
    _close_overs(probe, inn.get("overs", []), bpo)
    return probe


def _stopped(inn: dict[str, Any], tally: _Tally, revised: TargetRevised, super_over: bool,
             bpo: int) -> bool:
    """True when the revised chase ended early: the revision is then the par at the stop."""
    return _reason(_probe(inn, bpo), tally.runs, revised.runs, revised.balls, super_over,
                   bpo) == "stopped"


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


def _deliveries(number: int, inn: dict[str, Any], tally: _Tally, clock: _Clock, bpo: int,
                super_over: bool) -> Iterator[Timed]:
    overs = inn.get("overs", [])
    for j, ov in enumerate(overs):
        if j:
            clock.over_break()
        for k, ball in enumerate(ov["deliveries"]):
            path = f"innings[{number - 1}].overs[{j}].deliveries[{k}]"
            with reading_at(path):
                delivery = _delivery(number, ov["over"], k + 1, ball, path)
                _count(tally, ball)
                if tally.wickets > rules.wickets_limit(super_over):
                    raise CricsheetError("a wicket after the innings was complete (Law 13.3)")
            yield clock.ball(), delivery
    _close_overs(tally, overs, bpo)


def _delivery(number: int, over: int, k: int, ball: dict[str, Any], path: str) -> Delivery:
    extras = ball.get("extras", {})
    return Delivery(
        innings=number, over=over, ball=k, bowler=ball["bowler"], batter=ball["batter"],
        non_striker=ball["non_striker"], runs_batter=ball["runs"]["batter"],
        non_boundary=bool(ball["runs"].get("non_boundary", False)),
        extras=Extras(**extras) if extras else NO_EXTRAS,
        wickets=tuple(_wicket(w, at) for at, w in items_at(ball, "wickets", path)),
        review=_review(ball.get("review")),
        replacements=_replacements(ball.get("replacements", {})),
    )


def _wicket(w: dict[str, Any], path: str) -> Wicket:
    with reading_at(path):
        # A fielder may be recorded without a name (an unnamed substitute): the scorecard then
        # shows the dismissal without one ("c ? b X"); the dismissal stands (Law 33).
        return Wicket(kind=w["kind"], player_out=w["player_out"],
                      fielders=tuple(Fielder(name=f["name"], substitute=bool(f.get("substitute")))
                                     for f in w.get("fielders", []) if "name" in f))


def _review(raw: dict[str, Any] | None) -> Review | None:
    """The scorecard does not show reviews: one the event cannot hold is left out, not fatal."""
    if not raw:
        return None
    try:
        return Review(by=raw["by"], umpire=raw["umpire"], batter=raw["batter"],
                      decision=raw["decision"], umpires_call=bool(raw.get("umpires_call")))
    except (KeyError, EventValidationError):
        return None


def _replacements(raw: dict[str, list[dict[str, Any]]]) -> tuple[Replacement, ...]:
    out = [Replacement(scope="match", reason=r["reason"], player_in=r["in"],
                       player_out=r["out"], team=r["team"]) for r in raw.get("match", [])]
    # A role may be taken up with no one named as giving it up, e.g. a deputy acting for a
    # captain (Law 1.3) or a new wicket-keeper.
    out += [Replacement(scope="role", reason=r["reason"], player_in=r["in"],
                        player_out=r.get("out"), role=r["role"]) for r in raw.get("role", [])]
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
    if tally.wickets + tally.retired_not_out + tally.absent >= rules.wickets_limit(super_over):
        # Law 13.3: no batter left to come in; one retired not out who cannot resume (Law
        # 25.4.2) or one absent hurt leaves the side short.
        return "all_out"
    return "stopped"


def _decided(outcome: dict[str, Any], innings: list[dict[str, Any]]) -> MatchDecided | None:
    """Outcomes decided off the field; a par-score result is :func:`_par_score`'s."""
    if outcome.get("result") == "no result":
        return MatchDecided(kind="no_result" if innings else "abandoned")
    if outcome.get("method") == "Awarded":
        return MatchDecided(kind="awarded", winner=outcome["winner"])
    if outcome.get("bowl_out"):
        return MatchDecided(kind="bowl_out", winner=outcome["bowl_out"])
    if outcome.get("eliminator"):
        supers = [inn for inn in innings if inn.get("super_over")]
        if len(supers) < 2:
            raise CricsheetError("a super-over winner with no super-over balls",
                                 "info.outcome.eliminator")
        if _runs(supers[-2]) == _runs(supers[-1]):  # the last super over tied: boundary count
            return MatchDecided(kind="boundary_count", winner=outcome["eliminator"])
    return None


def _par_score(info: dict[str, Any], innings: list[dict[str, Any]]) -> MatchDecided | None:
    """A result declared from the par score (DLS / VJD playing conditions), or None.

    When a chase is stopped for good, the officials compare it with the par score at the stop.
    The par is on no ball, so that result is recorded as the officials gave it. Every other
    result of the pair (a target reached in play, a chase all out or with its overs bowled) is
    left to the fold, which computes it from the balls (Law 16).
    """
    outcome = info["outcome"]
    method = PAR_METHODS.get(outcome.get("method", ""))
    by, tie = outcome.get("by", {}), outcome.get("result") == "tie"
    main = _main(innings)
    if method is None or len(main) != 2 or not ("runs" in by or tie):
        return None
    winner = None if tie else outcome["winner"]
    # Law 16 never gives the side batting last a win by runs: only a par can.
    if winner != main[1]["team"] and not _cut_short(info, main[1]):
        return None
    return MatchDecided(kind="par_score", winner=winner, margin=by["runs"] if winner else None,
                        method=method)


def _cut_short(info: dict[str, Any], chase: dict[str, Any]) -> bool:
    """The chase ended not all out, with overs left and its target not reached in play."""
    bpo = int(info.get("balls_per_over", 6))
    target = chase.get("target")
    allotted = (_overs_to_balls(target["overs"], bpo) if target else int(info["overs"]) * bpo)
    pen = chase.get("penalty_runs", {})
    return _reason(_probe(chase, bpo), pen.get("pre", 0) + pen.get("post", 0),
                   int(target["runs"]) if target else None, allotted, False, bpo) == "stopped"


def _runs(inn: dict[str, Any]) -> int:
    pen = inn.get("penalty_runs", {})
    return (sum(b["runs"]["total"] for ov in inn.get("overs", []) for b in ov["deliveries"])
            + pen.get("pre", 0) + pen.get("post", 0))
