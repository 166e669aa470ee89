"""Build the public :class:`~schemas.scorecard.Scorecard` from a fold state, on demand.

Kept apart from the per-ball path: the document is assembled when someone reads a card, never
while folding, so a replay does not pay for views nobody asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from schemas.scorecard import Result, Scorecard
from streams import rules
from streams.innings import Innings

if TYPE_CHECKING:
    from schemas.events import MatchCreated, MatchDecided, TargetRevised, Toss

Target = tuple[int, int, bool]  # runs, legal balls, revised


class FoldState(Protocol):
    """What the document reads of a fold state. ``streams.fold`` owns the state and imports
    this module to build its document; this module names only the fields it reads, so the
    import goes one way."""

    @property
    def match_id(self) -> str | None: ...
    @property
    def created(self) -> MatchCreated | None: ...
    @property
    def toss(self) -> Toss | None: ...
    @property
    def innings(self) -> list[Innings]: ...
    @property
    def decided(self) -> MatchDecided | None: ...
    @property
    def par(self) -> MatchDecided | None: ...
    @property
    def targets(self) -> dict[int, tuple[TargetRevised, int]]: ...


def build(state: FoldState, seq: int) -> Scorecard:
    created = state.created
    toss = state.toss
    return Scorecard(
        match_id=state.match_id or "", seq=seq,
        teams=created.teams if created else (),
        venue=created.venue if created else None,
        competition=created.competition if created else None,
        toss=(f"{toss.winner} won the toss and chose to {toss.decision}" if toss else None),
        innings=tuple(inn.card(target(state, i)) for i, inn in enumerate(state.innings)),
        result=result(state),
    )


def target(state: FoldState, index: int) -> Target | None:
    """The target of an innings: a revised one (DLS) if set, else Law 16's one run more."""
    inn = state.innings[index]
    revised = state.targets.get(inn.number)
    if revised is not None:
        return revised[0].runs, revised[0].balls, True
    same_kind = [i for i in state.innings[: index + 1] if i.super_over == inn.super_over]
    if len(same_kind) % 2 == 1:
        return None  # the first innings of a pair sets the target
    overs = 1 if inn.super_over else (state.created.overs if state.created else 20)
    return same_kind[-2].runs + 1, overs * inn.bpo, False


def _facts(state: FoldState, inn: Innings) -> rules.InningsFacts:
    t = target(state, state.innings.index(inn))
    revised = state.targets.get(inn.number)
    # A par set when play stopped with the chasers already past it was never "reached".
    reached_in_play = revised is None or revised[1] < revised[0].runs
    return rules.InningsFacts(
        inn.batting, inn.bowling, inn.super_over, inn.runs, inn.wickets, inn.legal, inn.ended,
        inn.end_reason, t[0] if t else None, t[1] if t else None, t[2] if t else False,
        reached_in_play)


def result(state: FoldState) -> Result | None:
    decided = state.decided
    if decided is not None and decided.kind in ("no_result", "abandoned"):
        text = "No result" if decided.kind == "no_result" else "Match abandoned"
        return Result(None, decided.kind, None, None, text)
    if decided is not None and decided.kind == "awarded":
        # Law 16.3: the umpires award the match when a side refuses to play.
        return Result(decided.winner, "awarded", None, "awarded", f"{decided.winner} won "
                      "(match awarded)")
    main = [i for i in state.innings if not i.super_over]
    if len(main) < 2:
        return None
    if state.par is not None:
        return _par(state, state.par)
    pair = rules.pair_result(_facts(state, main[1]))
    if pair is None:
        return None
    if pair.kind != "tie":
        return _win(pair)
    return _tie(state, "DLS" if pair.dls else None)


def _par(state: FoldState, par: MatchDecided) -> Result:
    """DLS / VJD playing conditions: a chase stopped for good is judged against the par score at
    the stop. The margin is the officials' (it is on no ball); level with par is a tie."""
    if par.winner is None or par.margin is None:
        return _tie(state, par.method)
    unit = rules.plural(par.margin, "run")
    return Result(par.winner, "runs", par.margin, par.method,
                  f"{par.winner} won by {unit}{_method_note(par.method)}")


def _method_note(method: str | None) -> str:
    return f" ({method} method)" if method in ("DLS", "VJD") else ""


def _win(pair: rules.PairResult) -> Result:
    assert pair.margin is not None
    unit = rules.plural(pair.margin, "run" if pair.kind == "runs" else "wicket")
    notes = []
    if pair.balls_left is not None:
        notes.append(rules.plural(pair.balls_left, "ball") + " left")
    if pair.dls:
        notes.append("DLS method")
    text = f"{pair.winner} won by {unit}" + (f" ({', '.join(notes)})" if notes else "")
    return Result(pair.winner, pair.kind,  # type: ignore[arg-type]
                  pair.margin, "DLS" if pair.dls else None, text)


def _tie(state: FoldState, par_method: str | None) -> Result:
    """Law 16.5.1: a tie. Competition rules then settle a winner: super over, bowl-out...

    ``par_method``: the tie was on a par score (DLS, VJD), or None."""
    supers = [i for i in state.innings if i.super_over]
    winner, method, how = None, par_method, ""
    for k in range(1, len(supers), 2):
        pair = rules.pair_result(_facts(state, supers[k]))
        if pair is not None and pair.kind != "tie":
            winner, method, how = pair.winner, "super_over", "won the Super Over"
    decided = state.decided
    if winner is None and decided is not None and decided.kind in ("bowl_out", "boundary_count"):
        winner, method = decided.winner, decided.kind
        how = "won the bowl-out" if decided.kind == "bowl_out" else "won on boundary count"
    text = "Match tied"
    if winner is not None:
        text += f" ({winner} {how})"
    else:
        text += _method_note(method)
    return Result(winner, "tie", None, method, text)
