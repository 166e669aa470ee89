"""The scorecard document: the public contract every consumer of a match's state reads.

The fold in ``streams`` builds it; the gateway, the notification service and
``stumpcast scorecard --json`` ship it. The JSON names below are fixed; fields may be added,
never renamed or removed. Rates are floats rounded to two places; ``overs`` is scorers'
notation (``"19.4"``). ``seq`` is the position of the last event folded in, so a consumer can
tell whether it has missed something.

Match data from Cricsheet (cricsheet.org) is credited wherever it is shown (ODC-BY 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CREDIT = "Match data: Cricsheet (cricsheet.org), ODC-BY 1.0"

ResultKind = Literal["runs", "wickets", "tie", "no_result", "abandoned", "awarded"]


@dataclass(frozen=True, slots=True)
class BattingLine:
    name: str
    runs: int
    balls: int
    fours: int
    sixes: int
    out: bool
    dismissal: str  # "c Kohli b Siraj", "not out", "retired hurt", ...
    strike_rate: float | None


@dataclass(frozen=True, slots=True)
class BowlingLine:
    name: str
    legal_balls: int
    overs: str
    maidens: int
    runs: int
    wickets: int
    wides: int
    noballs: int
    economy: float | None


@dataclass(frozen=True, slots=True)
class ExtrasLine:
    wides: int
    noballs: int
    byes: int
    legbyes: int
    penalty: int

    @property
    def total(self) -> int:
        return self.wides + self.noballs + self.byes + self.legbyes + self.penalty


@dataclass(frozen=True, slots=True)
class FallOfWicket:
    wicket: int
    runs: int
    player: str
    overs: str


@dataclass(frozen=True, slots=True)
class Partnership:
    batters: tuple[str, ...]
    runs: int
    balls: int


@dataclass(frozen=True, slots=True)
class InningsCard:
    number: int
    batting_team: str
    bowling_team: str
    super_over: bool
    runs: int
    wickets: int
    legal_balls: int
    overs: str
    extras: ExtrasLine
    target: int | None
    target_balls: int | None
    target_revised: bool
    run_rate: float | None
    required_rate: float | None
    batting: tuple[BattingLine, ...]
    bowling: tuple[BowlingLine, ...]
    fall_of_wickets: tuple[FallOfWicket, ...]
    partnership: Partnership | None
    batters_in: tuple[str, ...]  # striker first
    bowler: str | None
    this_over: tuple[str, ...]
    last_balls: tuple[str, ...]
    ended: bool
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Result:
    winner: str | None
    kind: ResultKind
    margin: int | None
    method: str | None  # "DLS", "super_over", "bowl_out", "boundary_count", None
    text: str


@dataclass(frozen=True, slots=True)
class Scorecard:
    match_id: str
    seq: int
    teams: tuple[str, ...]
    venue: str | None
    competition: str | None
    toss: str | None
    innings: tuple[InningsCard, ...]
    result: Result | None

    def to_json(self) -> dict[str, Any]:
        """The document as JSON-ready data (the contract's names)."""
        return {
            "match_id": self.match_id, "seq": self.seq, "teams": list(self.teams),
            "venue": self.venue, "competition": self.competition, "toss": self.toss,
            "innings": [_innings_json(i) for i in self.innings],
            "result": _plain(self.result) if self.result else None,
            "credit": CREDIT,
        }


def _plain(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _innings_json(i: InningsCard) -> dict[str, Any]:
    out = _plain(i)
    out["extras"] = {**_plain(i.extras), "total": i.extras.total}
    out["batting"] = [_plain(b) for b in i.batting]
    out["bowling"] = [_plain(b) for b in i.bowling]
    out["fall_of_wickets"] = [_plain(f) for f in i.fall_of_wickets]
    if i.partnership is not None:
        out["partnership"] = {**_plain(i.partnership), "batters": list(i.partnership.batters)}
    for key in ("batters_in", "this_over", "last_balls"):
        out[key] = list(out[key])
    return out
