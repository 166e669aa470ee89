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

import contextlib
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

SOURCE = "cricsheet"
_NAMESPACE = uuid.UUID("5d6f0c84-8f0e-4d55-9a1e-2f1c2b4e6a10")
_NO_WICKET = ("retired hurt", "retired not out")
_PAR_METHODS: dict[str, Literal["DLS", "VJD"]] = {"D/L": "DLS", "VJD": "VJD"}


class CricsheetError(ValueError):
    """The file cannot be imported. ``file``: where it came from; ``path``: the JSON path in it
    (``innings[1].overs[3].deliveries[2]``); ``reason``: what is wrong there."""

    def __init__(self, reason: str, path: str = "", file: str = "") -> None:
        super().__init__(": ".join(part for part in (file, path, reason) if part))
        self.reason, self.path, self.file = reason, path, file

    def in_file(self, file: str) -> CricsheetError:
        return self if self.file else CricsheetError(self.reason, self.path, file)


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


@contextlib.contextmanager
def _at(path: str) -> Iterator[None]:
    """Whatever goes wrong inside is reported at ``path``, the JSON being read."""
    try:
        yield
    except CricsheetError:
        raise
    except EventValidationError as exc:  # "wickets[0]: kind: must be one of ..."
        raise CricsheetError(str(exc), path) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CricsheetError(f"malformed ({type(exc).__name__}: {exc})", path) from exc


# --- the file's shape, checked before anything is built -------------------------------------

Kind = type | tuple[type, ...]
# Per object of the format: (required keys, optional keys) -> JSON type. Only what the importer
# reads is listed; other keys are ignored whatever they hold.
_SHAPES: dict[str, tuple[dict[str, Kind], dict[str, Kind]]] = {
    "info": ({"teams": list, "players": dict, "dates": list, "venue": str, "toss": dict,
              "outcome": dict},
             {"overs": int, "balls_per_over": int, "city": str, "event": dict}),
    "event": ({}, {"name": str, "match_number": int, "stage": str}),
    "toss": ({"winner": str, "decision": str}, {}),
    "outcome": ({}, {"winner": str, "by": dict, "method": str, "result": str, "eliminator": str,
                     "bowl_out": str}),
    "by": ({}, {"runs": int, "wickets": int, "innings": int}),
    "innings": ({"team": str}, {"overs": list, "penalty_runs": dict, "target": dict,
                                "super_over": bool, "declared": bool, "forfeited": bool,
                                "absent_hurt": list}),
    "penalty_runs": ({}, {"pre": int, "post": int}),
    "target": ({"runs": int, "overs": (int, float)}, {}),
    "over": ({"over": int, "deliveries": list}, {}),
    "delivery": ({"batter": str, "bowler": str, "non_striker": str, "runs": dict},
                 {"extras": dict, "wickets": list, "replacements": dict, "review": dict}),
    "runs": ({"batter": int, "extras": int, "total": int}, {"non_boundary": bool}),
    "extras": ({}, {k: int for k in ("wides", "noballs", "byes", "legbyes", "penalty")}),
    "wicket": ({"kind": str, "player_out": str}, {"fielders": list}),
    "fielder": ({}, {"name": str, "substitute": bool}),
    "replacements": ({}, {"match": list, "role": list}),
    "match_replacement": ({"in": str, "out": str, "reason": str, "team": str}, {}),
    "role_replacement": ({"in": str, "reason": str, "role": str}, {"out": str}),
}
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean", type(None): "null"}


def _fits(value: Any, kind: Kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # JSON true is not a number, though Python's bool is an int.
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _check(obj: Any, shape: str, path: str, strict: bool = False) -> dict[str, Any]:
    """``obj`` is an object with the keys ``_SHAPES[shape]`` asks for; ``strict``: no others."""
    if not isinstance(obj, dict):
        raise CricsheetError(f"must be an object, got {_JSON_NAMES.get(type(obj), '?')}", path)
    required, optional = _SHAPES[shape]
    for key in required:
        if key not in obj:
            raise CricsheetError(f"{key!r} missing", path)
    for key, value in obj.items():
        kind = required.get(key) or optional.get(key)
        if kind is None and strict:
            raise CricsheetError(f"unknown key {key!r} (known: {', '.join(optional)})", path)
        if kind is not None and not _fits(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise CricsheetError(f"must be {' or '.join(_JSON_NAMES[k] for k in kinds)}, got "
                                 f"{_JSON_NAMES.get(type(value), '?')}", f"{path}.{key}")
    return obj


def _items(obj: dict[str, Any], key: str, path: str) -> Iterator[tuple[str, Any]]:
    for i, item in enumerate(obj.get(key, [])):
        yield f"{path}.{key}[{i}]", item


def check_shape(doc: dict[str, Any]) -> None:
    """Raise CricsheetError (JSON path, reason) unless the importer can read ``doc`` faithfully."""
    info = _check(doc.get("info"), "info", "info")
    _check_info(info)
    innings = doc.get("innings", [])
    if not isinstance(innings, list):
        raise CricsheetError("must be an array", "innings")
    for i, inn in enumerate(innings):
        _check_innings(inn, f"innings[{i}]", info["teams"])
    main = [i for i, inn in enumerate(innings) if not inn.get("super_over")]
    if len(main) > 2:  # a Test or first-class match: Law 12 (two innings a side)
        raise CricsheetError("a second innings for a side: only limited-overs matches (one "
                             "innings a side, plus super overs) are supported",
                             f"innings[{main[2]}]")


def _check_info(info: dict[str, Any]) -> None:
    if "overs" not in info:
        raise CricsheetError(f"'overs' missing: only limited-overs matches are supported "
                             f"(match_type {info.get('match_type')!r})", "info")
    teams = info["teams"]
    if len(teams) != 2 or not all(isinstance(t, str) for t in teams):
        raise CricsheetError("must name two teams", "info.teams")
    for team in teams:
        if not isinstance(info["players"].get(team), list):
            raise CricsheetError(f"no list of players for {team!r}", "info.players")
    if not info["dates"]:
        raise CricsheetError("must hold the match's dates", "info.dates")
    with _at("info.dates[0]"):
        dt.date.fromisoformat(info["dates"][0])
    _check(info.get("event", {}), "event", "info.event")
    _check(info["toss"], "toss", "info.toss")
    _check_outcome(info["outcome"], teams)


def _check_outcome(outcome: dict[str, Any], teams: list[str]) -> None:
    _check(outcome, "outcome", "info.outcome")
    if "innings" in _check(outcome.get("by", {}), "by", "info.outcome.by"):
        raise CricsheetError("a win by an innings needs two innings a side: not supported",
                             "info.outcome.by.innings")
    if "result" in outcome and outcome["result"] not in ("tie", "no result"):
        raise CricsheetError(f"{outcome['result']!r} is not a limited-overs result",
                             "info.outcome.result")
    if "method" in outcome and outcome["method"] not in (*_PAR_METHODS, "Awarded"):
        # e.g. a tie settled on wickets lost: the card would say "tied" and drop the winner.
        raise CricsheetError(f"{outcome['method']!r} is not supported (known: D/L, VJD, "
                             "Awarded)", "info.outcome.method")
    for key in ("winner", "eliminator", "bowl_out"):
        if key in outcome and outcome[key] not in teams:
            raise CricsheetError(f"{outcome[key]!r} is not one of the teams",
                                 f"info.outcome.{key}")


def _check_innings(inn: Any, path: str, teams: list[str]) -> None:
    _check(inn, "innings", path)
    if inn["team"] not in teams:
        raise CricsheetError(f"{inn['team']!r} is not one of the teams", f"{path}.team")
    if inn.get("forfeited"):  # Law 15.2: only in matches of two innings a side
        raise CricsheetError("a forfeited innings is not supported", f"{path}.forfeited")
    _check(inn.get("penalty_runs", {}), "penalty_runs", f"{path}.penalty_runs")
    if "target" in inn:
        _check(inn["target"], "target", f"{path}.target")
    for at, name in _items(inn, "absent_hurt", path):
        if not isinstance(name, str):
            raise CricsheetError("must be a player's name", at)
    for at, over in _items(inn, "overs", path):
        _check(over, "over", at)
        for ball_at, ball in _items(over, "deliveries", at):
            _check_ball(ball, ball_at)


def _check_ball(ball: Any, path: str) -> None:
    _check(ball, "delivery", path)
    runs = _check(ball["runs"], "runs", f"{path}.runs")
    extras = _check(ball.get("extras", {}), "extras", f"{path}.extras", strict=True)
    # The importer counts runs.total, the fold batter runs + extras: they must be one number.
    if runs["extras"] != sum(extras.values()) or runs["total"] != runs["batter"] + runs["extras"]:
        raise CricsheetError(f"batter {runs['batter']} + extras {runs['extras']} "
                             f"{dict(extras)} do not make total {runs['total']}", f"{path}.runs")
    for at, wicket in _items(ball, "wickets", path):
        _check(wicket, "wicket", at)
        for fielder_at, fielder in _items(wicket, "fielders", at):
            _check(fielder, "fielder", fielder_at)
    subs = _check(ball.get("replacements", {}), "replacements", f"{path}.replacements")
    for scope in ("match", "role"):
        for at, sub in _items(subs, scope, f"{path}.replacements"):
            _check(sub, f"{scope}_replacement", at)


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
    with _at("info"):
        created = _match_created(info)
    with _at("info.toss"):
        toss = Toss(winner=info["toss"]["winner"], decision=info["toss"]["decision"])
    yield clock.at(-3600), created
    yield clock.at(1800), toss
    clock.at(1800)
    innings = doc.get("innings", [])
    with _at("info.outcome"):
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
    with _at(f"innings[{number - 1}].target"):
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
        with _at(f"innings[{number - 1}].penalty_runs.{when}"):
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
            with _at(path):
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
        wickets=tuple(_wicket(w, at) for at, w in _items(ball, "wickets", path)),
        review=_review(ball.get("review")),
        replacements=_replacements(ball.get("replacements", {})),
    )


def _wicket(w: dict[str, Any], path: str) -> Wicket:
    with _at(path):
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
    method = _PAR_METHODS.get(outcome.get("method", ""))
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
