"""The Cricsheet JSON format as the importer reads it: its shape, checked before anything is
built, and the importer's error (https://cricsheet.org/format/json/).

Match data: Cricsheet (cricsheet.org), ODC-BY 1.0.

Every problem is a :class:`CricsheetError` naming the JSON path and the reason; the importer
adds the file. Only what the importer reads is checked; other keys are ignored whatever they hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any, Literal

from schemas.events import EventValidationError

PAR_METHODS: dict[str, Literal["DLS", "VJD"]] = {"D/L": "DLS", "VJD": "VJD"}


class CricsheetError(ValueError):
    """The file cannot be imported. ``file``: where it came from; ``path``: the JSON path in it
    (``innings[1].overs[3].deliveries[2]``); ``reason``: what is wrong there."""

    def __init__(self, reason: str, path: str = "", file: str = "") -> None:
        super().__init__(": ".join(part for part in (file, path, reason) if part))
        self.reason, self.path, self.file = reason, path, file

    def in_file(self, file: str) -> CricsheetError:
        return self if self.file else CricsheetError(self.reason, self.path, file)



@contextlib.contextmanager
def reading_at(path: str) -> Iterator[None]:
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


def items_at(obj: dict[str, Any], key: str, path: str) -> Iterator[tuple[str, Any]]:
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
    with reading_at("info.dates[0]"):
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
    if "method" in outcome and outcome["method"] not in (*PAR_METHODS, "Awarded"):
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
    for at, name in items_at(inn, "absent_hurt", path):
        if not isinstance(name, str):
            raise CricsheetError("must be a player's name", at)
    for at, over in items_at(inn, "overs", path):
        _check(over, "over", at)
        for ball_at, ball in items_at(over, "deliveries", at):
            _check_ball(ball, ball_at)


def _check_ball(ball: Any, path: str) -> None:
    _check(ball, "delivery", path)
    runs = _check(ball["runs"], "runs", f"{path}.runs")
    extras = _check(ball.get("extras", {}), "extras", f"{path}.extras", strict=True)
    # The importer counts runs.total, the fold batter runs + extras: they must be one number.
    if runs["extras"] != sum(extras.values()) or runs["total"] != runs["batter"] + runs["extras"]:
        raise CricsheetError(f"batter {runs['batter']} + extras {runs['extras']} "
                             f"{dict(extras)} do not make total {runs['total']}", f"{path}.runs")
    for at, wicket in items_at(ball, "wickets", path):
        _check(wicket, "wicket", at)
        for fielder_at, fielder in items_at(wicket, "fielders", at):
            _check(fielder, "fielder", fielder_at)
    subs = _check(ball.get("replacements", {}), "replacements", f"{path}.replacements")
    for scope in ("match", "role"):
        for at, sub in items_at(subs, scope, f"{path}.replacements"):
            _check(sub, f"{scope}_replacement", at)
