"""Match events: the versioned, validated facts a match is made of.

Every event is an :class:`Event` envelope (``type``, ``v``, ``event_id``, ``match_id``, ``seq``,
``ts``, ``source``) around one payload. Payloads are frozen dataclasses that validate on
construction, in the manner of h11's events: a bad value raises :class:`EventValidationError`
naming the field path and the reason, so "you built it wrong" is caught where it happens.

Wire names (``"match.created"``, ``"delivery"``, ...) and versions are class attributes; the
codec (:mod:`schemas.codec`) maps them to JSON and never writes Python class paths. A correction
never edits history: :class:`DeliveryVoided` and :class:`DeliveryCorrected` are new events that
point at the ``seq`` of the ball they amend.

Exceptions::

    ValueError
     └── EventValidationError      a malformed event (field path + reason)
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, get_args, get_origin


class EventValidationError(ValueError):
    """An event, or a part of one, is malformed. ``path`` is the dotted field path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '<event>'}: {reason}")
        self.path = path
        self.reason = reason

    def under(self, prefix: str) -> EventValidationError:
        """The same error seen from an enclosing object."""
        return EventValidationError(f"{prefix}.{self.path}" if self.path else prefix, self.reason)


def _meta(doc: str, **rules: Any) -> dict[str, Any]:
    return {"doc": doc, **rules}


def req(doc: str, **rules: Any) -> Any:
    """A required field; ``rules`` are ``min``, ``max``, ``min_len``, ``max_len``."""
    return field(metadata=_meta(doc, **rules))


def opt(default: Any, doc: str, **rules: Any) -> Any:
    """An optional field with a default."""
    return field(default=default, metadata=_meta(doc, **rules))


_MAX_NAME = 200


# --- generic validation, driven by the type hints and field metadata ------------------------


FieldSpec = tuple[str, Any, dict[str, Any]]
_SPECS: dict[type, tuple[FieldSpec, ...]] = {}


def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """(name, resolved type hint, metadata) per field; computed on first use, not at import."""
    specs = _SPECS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = _SPECS[cls] = tuple((f.name, hints[f.name], dict(f.metadata))
                                    for f in fields(cls))
    return specs


def check_value(hint: Any, value: Any, path: str, rules: dict[str, Any]) -> None:
    """Raise EventValidationError unless ``value`` fits ``hint`` and ``rules``."""
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            if type(None) in get_args(hint):
                return
            raise EventValidationError(path, "must not be null")
        inner = [a for a in get_args(hint) if a is not type(None)]
        check_value(inner[0], value, path, rules)
        return
    if origin is Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(a) for a in get_args(hint))
            raise EventValidationError(path, f"must be one of {allowed}, got {value!r}")
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise EventValidationError(path, f"must be a tuple, got {type(value).__name__}")
        _check_len(value, path, rules)
        item = get_args(hint)[0]
        for i, v in enumerate(value):
            check_value(item, v, f"{path}[{i}]", {})
        return
    _check_scalar(hint, value, path, rules)


def _check_scalar(hint: Any, value: Any, path: str, rules: dict[str, Any]) -> None:
    if hint is int:
        if type(value) is not int:
            raise EventValidationError(path, f"must be an integer, got {type(value).__name__}")
        if "min" in rules and value < rules["min"]:
            raise EventValidationError(path, f"must be >= {rules['min']}, got {value}")
        if "max" in rules and value > rules["max"]:
            raise EventValidationError(path, f"must be <= {rules['max']}, got {value}")
    elif hint is bool:
        if type(value) is not bool:
            raise EventValidationError(path, f"must be a boolean, got {type(value).__name__}")
    elif hint is str:
        if type(value) is not str:
            raise EventValidationError(path, f"must be a string, got {type(value).__name__}")
        _check_len(value, path, {"min_len": 1, "max_len": _MAX_NAME, **rules})
    elif hint is dt.datetime:
        if not isinstance(value, dt.datetime):
            raise EventValidationError(path, f"must be a datetime, got {type(value).__name__}")
        if value.utcoffset() != dt.timedelta(0):
            raise EventValidationError(path, "must be a UTC instant (timezone-aware, offset 0)")
    elif isinstance(hint, type):
        if not isinstance(value, hint):
            raise EventValidationError(path, f"must be {hint.__name__}, "
                                             f"got {type(value).__name__}")
    else:  # pragma: no cover - a programming error in this module
        raise TypeError(f"unsupported field type {hint!r}")


def _check_len(value: Any, path: str, rules: dict[str, Any]) -> None:
    if "min_len" in rules and len(value) < rules["min_len"]:
        what = "empty" if not value else f"shorter than {rules['min_len']}"
        raise EventValidationError(path, f"must not be {what}")
    if "max_len" in rules and len(value) > rules["max_len"]:
        raise EventValidationError(path, f"longer than {rules['max_len']}")


class _Validated:
    """Mixin: validate every field on construction, then the class's own cross-field rules."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for name, hint, rules in field_specs(type(self)):
            check_value(hint, getattr(self, name), name, rules)
        self._check()

    def _check(self) -> None:
        """Cross-field rules; raise EventValidationError."""


# --- parts of payloads ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Squad(_Validated):
    team: str = req("team name")
    players: tuple[str, ...] = req("players named for the match", min_len=1, max_len=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class Extras(_Validated):
    """Runs not off the bat, by kind. ``wides`` and ``noballs`` include their one-run penalty."""

    wides: int = opt(0, "wide runs, including the one-run penalty (Law 22)", min=0, max=10)
    noballs: int = opt(0, "no-ball penalty runs (Law 21)", min=0, max=10)
    byes: int = opt(0, "byes (Law 23)", min=0, max=10)
    legbyes: int = opt(0, "leg byes (Law 23)", min=0, max=10)
    penalty: int = opt(0, "penalty runs awarded on this ball (Law 41.17)", min=0, max=15)

    def _check(self) -> None:
        # Law 21 (No ball): a ball that is both a No ball and a Wide is called No ball only.
        if self.wides and self.noballs:
            raise EventValidationError("wides", "a ball cannot be both a wide and a no-ball")
        # Law 22.6: runs on a Wide are all scored as Wides, never as byes or leg byes.
        if self.wides and (self.byes or self.legbyes):
            raise EventValidationError("byes", "runs on a wide are wides, not byes/leg byes")
        if self.byes and self.legbyes:
            raise EventValidationError("legbyes", "a ball cannot give both byes and leg byes")

    @property
    def total(self) -> int:
        return self.wides + self.noballs + self.byes + self.legbyes + self.penalty


NO_EXTRAS = Extras()

WicketKind = Literal[
    "bowled", "caught", "caught and bowled", "lbw", "stumped", "run out", "hit wicket",
    "hit the ball twice", "handled the ball", "obstructing the field", "timed out",
    "retired hurt", "retired not out", "retired out",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fielder(_Validated):
    name: str = req("fielder's name")
    substitute: bool = opt(False, "a substitute fielder (Law 24)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Wicket(_Validated):
    kind: WicketKind = req("how the batter was dismissed or retired (Laws 25.4, 32-40)")
    player_out: str = req("the batter out")
    fielders: tuple[Fielder, ...] = opt((), "fielders involved", max_len=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Review(_Validated):
    by: str = req("team asking for the review")
    umpire: str = req("umpire whose decision was reviewed")
    batter: str = req("batter concerned")
    decision: Literal["upheld", "struck down"] = req("the review's outcome")
    umpires_call: bool = opt(False, "stood on umpire's call")


@dataclass(frozen=True, slots=True, kw_only=True)
class Replacement(_Validated):
    """A player replaced: for the match (Impact Player, concussion) or in a role (injury)."""

    scope: Literal["match", "role"] = req("'match': a squad change; 'role': mid-over swap")
    reason: str = req("e.g. impact_player, concussion_substitute, supersub, injury")
    player_in: str = req("player coming in")
    player_out: str | None = opt(None, "player going out; required for scope 'match'; a role "
                                       "may be taken up with no one giving it up")
    team: str | None = opt(None, "team making a match replacement")
    # Free text: the role vocabulary is the data source's ('bowler', 'batter', 'captain',
    # 'wicketkeeper', ...) and the fold reads none of it.
    role: str | None = opt(None, "role taken over, for scope 'role', e.g. 'bowler'")

    def _check(self) -> None:
        if self.scope == "match" and self.team is None:
            raise EventValidationError("team", "required for a match replacement")
        if self.scope == "match" and self.player_out is None:
            raise EventValidationError("player_out", "required for a match replacement")
        if self.scope == "role" and self.role is None:
            raise EventValidationError("role", "required for a role replacement")


# --- payloads -----------------------------------------------------------------------------------


class Payload(_Validated):
    """Base of every payload; ``TYPE`` and ``VERSION`` are its wire name and current version."""

    __slots__ = ()
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchCreated(Payload):
    TYPE: ClassVar[str] = "match.created"
    VERSION: ClassVar[int] = 2  # v1 had no balls_per_over (always 6); upcast in codec
    teams: tuple[str, ...] = req("the two teams", min_len=2, max_len=2)
    squads: tuple[Squad, ...] = req("players named per team", min_len=2, max_len=2)
    overs: int = req("overs per innings as scheduled", min=1, max=50)
    balls_per_over: int = opt(6, "legal balls per over (Law 17.1)", min=1, max=10)
    venue: str = req("ground")
    competition: str = req("competition or series")
    city: str | None = opt(None, "city")
    stage: str | None = opt(None, "stage or match number, e.g. 'Final'")

    def _check(self) -> None:
        if self.teams[0] == self.teams[1]:
            raise EventValidationError("teams", "the two teams must differ")
        if {s.team for s in self.squads} != set(self.teams):
            raise EventValidationError("squads", "must name exactly the two teams")


@dataclass(frozen=True, slots=True, kw_only=True)
class Toss(Payload):
    TYPE: ClassVar[str] = "toss"
    VERSION: ClassVar[int] = 1
    winner: str = req("team that won the toss")
    decision: Literal["bat", "field"] = req("what the toss winner chose (Law 13.4)")


@dataclass(frozen=True, slots=True, kw_only=True)
class InningsStarted(Payload):
    TYPE: ClassVar[str] = "innings.started"
    VERSION: ClassVar[int] = 1
    innings: int = req("1-based innings number in the match, super overs included", min=1, max=12)
    batting_team: str = req("batting side")
    bowling_team: str = req("fielding side")
    super_over: bool = opt(False, "a one-over eliminator innings (playing conditions)")

    def _check(self) -> None:
        if self.batting_team == self.bowling_team:
            raise EventValidationError("bowling_team", "must differ from batting_team")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery(Payload):
    """One ball bowled, legal or not."""

    TYPE: ClassVar[str] = "delivery"
    VERSION: ClassVar[int] = 1
    innings: int = req("innings this ball belongs to", min=1, max=12)
    over: int = req("0-based over number as the umpire counts it (Law 17.5)", min=0, max=99)
    ball: int = req("1-based delivery number within the over, extras included", min=1, max=30)
    bowler: str = req("bowler")
    batter: str = req("striker")
    non_striker: str = req("non-striker")
    runs_batter: int = opt(0, "runs credited to the striker", min=0, max=10)
    non_boundary: bool = opt(False, "4 or 6 runs that were run, not a boundary (Law 19)")
    extras: Extras = opt(NO_EXTRAS, "extras by kind")
    wickets: tuple[Wicket, ...] = opt((), "dismissals and retirements on this ball", max_len=2)
    review: Review | None = opt(None, "a player review")
    replacements: tuple[Replacement, ...] = opt((), "substitutions before this ball", max_len=4)

    def _check(self) -> None:
        if self.batter == self.non_striker:
            raise EventValidationError("non_striker", "must differ from batter")
        # Law 22.6: on a Wide nothing is credited to the striker.
        if self.extras.wides and self.runs_batter:
            raise EventValidationError("runs_batter", "must be 0 on a wide")
        outs = [w.player_out for w in self.wickets]
        if len(set(outs)) != len(outs):
            raise EventValidationError("wickets", "the same batter cannot be out twice")

    @property
    def legal(self) -> bool:
        # Law 17.3 / 21 / 22: a No ball or a Wide does not count as one of the over.
        return not (self.extras.wides or self.extras.noballs)

    @property
    def total_runs(self) -> int:
        return self.runs_batter + self.extras.total


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRevised(Payload):
    TYPE: ClassVar[str] = "target.revised"
    VERSION: ClassVar[int] = 1
    innings: int = req("innings whose target changes", min=2, max=12)
    runs: int = req("runs needed to win", min=1, max=1000)
    balls: int = req("legal balls the chasing side may face", min=1, max=600)
    method: Literal["DLS", "VJD", "other"] = opt("DLS", "how the target was set")


@dataclass(frozen=True, slots=True, kw_only=True)
class InningsEnded(Payload):
    TYPE: ClassVar[str] = "innings.ended"
    VERSION: ClassVar[int] = 1
    innings: int = req("innings that ended", min=1, max=12)
    reason: Literal["all_out", "overs_complete", "target_reached", "stopped", "declared"] = req(
        "why the innings closed; 'stopped' = play ended early (weather, light)")


@dataclass(frozen=True, slots=True, kw_only=True)
class PenaltyAwarded(Payload):
    """Penalty runs not attached to a ball (Law 41.17), e.g. Cricsheet's pre/post penalties."""

    TYPE: ClassVar[str] = "penalty.awarded"
    VERSION: ClassVar[int] = 1
    innings: int = req("innings the runs are added to", min=1, max=12)
    team: str = req("side receiving the runs")
    runs: int = req("penalty runs", min=1, max=50)
    reason: str | None = opt(None, "why, free text")


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchDecided(Payload):
    """An outcome that cannot be computed from the balls. Computable results are never sent.

    ``par_score``: a chase stopped for good and judged against the par score at the stop
    (DLS / VJD playing conditions); the par is not on any ball, so the officials' result is the
    fact. It settles the main pair of innings only: ``winner`` null means level with par (a tie,
    which a super over or a bowl-out may then settle).
    """

    TYPE: ClassVar[str] = "match.decided"
    VERSION: ClassVar[int] = 2  # v1 had no par_score, margin or method; upcast in codec
    kind: Literal["no_result", "abandoned", "awarded", "bowl_out", "boundary_count",
                  "par_score"] = req("how the match was decided off the field of play")
    winner: str | None = opt(None, "winning side; required for awarded/bowl_out/boundary_count, "
                                   "null for no_result/abandoned and for a tie on par")
    margin: int | None = opt(None, "par_score with a winner: runs the chase was ahead of par "
                                   "(or behind it)", min=1, max=1000)
    method: Literal["DLS", "VJD", "other"] | None = opt(
        None, "par_score: how the par was set; null for every other kind")

    def _check(self) -> None:
        needs_winner = self.kind in ("awarded", "bowl_out", "boundary_count")
        if needs_winner and self.winner is None:
            raise EventValidationError("winner", f"required when kind is {self.kind!r}")
        if self.kind in ("no_result", "abandoned") and self.winner is not None:
            raise EventValidationError("winner", f"must be null when kind is {self.kind!r}")
        if self.kind != "par_score":
            for name in ("margin", "method"):
                if getattr(self, name) is not None:
                    raise EventValidationError(name, f"must be null when kind is {self.kind!r}")
            return
        if self.method is None:
            raise EventValidationError("method", "required when kind is 'par_score'")
        if (self.margin is None) != (self.winner is None):
            raise EventValidationError("margin", "required with a winner, null for a tie on par")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryVoided(Payload):
    """A correction: the ball at ``target_seq`` should never have been recorded."""

    TYPE: ClassVar[str] = "delivery.voided"
    VERSION: ClassVar[int] = 1
    target_seq: int = req("seq of the delivery to void", min=1)
    reason: str | None = opt(None, "why, free text")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryCorrected(Payload):
    """A correction: the ball at ``target_seq`` is replaced by ``delivery``."""

    TYPE: ClassVar[str] = "delivery.corrected"
    VERSION: ClassVar[int] = 1
    target_seq: int = req("seq of the delivery to replace", min=1)
    delivery: Delivery = req("what the ball should have been")
    reason: str | None = opt(None, "why, free text")


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    MatchCreated, Toss, InningsStarted, Delivery, TargetRevised, InningsEnded, PenaltyAwarded,
    MatchDecided, DeliveryVoided, DeliveryCorrected,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(_Validated):
    """The envelope. ``seq`` is strictly increasing per match; ``ts`` is when the ball happened."""

    event_id: str = req("globally unique id; the same event always has the same id", max_len=128)
    match_id: str = req("match identifier", max_len=64)
    seq: int = req("position in the match's stream, from 1, no gaps", min=1)
    ts: dt.datetime = req("UTC instant the event happened on the field")
    source: str = req("producer, e.g. 'cricsheet' or 'scorer:ahmedabad-1'", max_len=64)
    payload: Payload = req("the event body")

    @property
    def type(self) -> str:
        return self.payload.TYPE

    @property
    def v(self) -> int:
        return self.payload.VERSION
