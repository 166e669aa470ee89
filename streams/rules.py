"""The cricket rules the scorecard fold needs, in one place, each citing the Law it follows.

Laws are the MCC Laws of Cricket (2017 Code, 3rd edition 2022). Where a figure comes from scoring
convention or from competition playing conditions rather than the Laws (maidens, bowler credit,
super overs, DLS), the comment says so. Everything here is pure and cheap: the fold calls the
per-ball functions for every delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import Delivery, Wicket

# Law 13 (Innings): an innings is complete when no batter is left to come in, ten wickets
# for a side of eleven (Law 1.1). Super over playing conditions end the innings at two wickets.
WICKETS_PER_INNINGS = 10
SUPER_OVER_WICKETS = 2

# Laws 25.4.2 and 25.4.3: a batter retiring through illness or injury is "Retired - not out";
# any other retirement is "Retired - out" and counts as a wicket.
NOT_A_WICKET = frozenset({"retired hurt", "retired not out"})

# Laws 32 (bowled), 33 (caught), 35 (hit wicket), 36 (LBW) and 39 (stumped) are credited to the
# bowler. Run out (38), obstructing (37), hit the ball twice (34), timed out (40) and
# retirements (25.4) are not: by scoring convention the bowler gets only wickets he caused.
BOWLER_CREDITED = frozenset(
    {"bowled", "caught", "caught and bowled", "lbw", "stumped", "hit wicket"})


def wickets_limit(super_over: bool) -> int:
    return SUPER_OVER_WICKETS if super_over else WICKETS_PER_INNINGS


def is_legal(d: Delivery) -> bool:
    """Law 17.3.2: a No ball (Law 21) or a Wide (Law 22) is not one of the balls of the over."""
    e = d.extras
    return not (e.wides or e.noballs)


def faced(d: Delivery) -> bool:
    """Law 22 (Wide ball): a Wide is out of the striker's reach, so not a ball received.

    A No ball is a ball received: the striker may hit it and score from it (Law 21).
    """
    return not d.extras.wides


def bowler_runs(d: Delivery) -> int:
    """Runs charged to the bowler: off the bat, plus Wides (Law 22) and No balls (Law 21).

    Byes and leg byes (Law 23) and penalty runs (Law 41.17) are extras the bowler is not
    charged with, by scoring convention.
    """
    e = d.extras
    return d.runs_batter + e.wides + e.noballs


def is_four(d: Delivery) -> bool:
    """Law 19.7: a boundary 4; runs that were *run* (``non_boundary``) are not a boundary."""
    return d.runs_batter == 4 and not d.non_boundary


def is_six(d: Delivery) -> bool:
    """Law 19.7: a boundary 6 (the ball pitched beyond the boundary)."""
    return d.runs_batter == 6 and not d.non_boundary


def counts_as_wicket(w: Wicket) -> bool:
    return w.kind not in NOT_A_WICKET


def is_out(kind: str) -> bool:
    """Whether the scorecard shows the batter as out (retired hurt is "not out", Law 25.4.2)."""
    return kind not in NOT_A_WICKET


def bowler_credited(w: Wicket) -> bool:
    return w.kind in BOWLER_CREDITED


def over_complete(legal_in_over: int, balls_per_over: int) -> bool:
    """Law 17.1: an over is the stated number of legal balls. Law 17.5: if the umpire miscounts,
    the over as counted stands, so the fold also closes an over when the next one starts."""
    return legal_in_over >= balls_per_over


def overs_text(whole_overs: int, balls: int) -> str:
    """Overs as scorers write them: completed overs, a dot, balls of the incomplete over."""
    return f"{whole_overs}.{balls}"


def dismissal_text(w: Wicket, bowler: str) -> str:
    """How a scorecard states a dismissal (Laws 32-40 name the dismissals)."""
    names = [(f"sub ({f.name})" if f.substitute else f.name) for f in w.fielders]
    kind = w.kind
    if kind == "caught":
        if names and w.fielders[0].name == bowler:  # Law 33: caught by the bowler himself
            return f"c & b {bowler}"
        return f"c {names[0]} b {bowler}" if names else f"c ? b {bowler}"
    if kind == "caught and bowled":
        return f"c & b {bowler}"
    if kind == "bowled":
        return f"b {bowler}"
    if kind == "lbw":
        return f"lbw b {bowler}"
    if kind == "stumped":
        return f"st {names[0]} b {bowler}" if names else f"st ? b {bowler}"
    if kind == "hit wicket":
        return f"hit wicket b {bowler}"
    if kind == "run out":
        return f"run out ({'/'.join(names)})" if names else "run out"
    return kind  # retired hurt, retired out, obstructing the field, hit the ball twice, ...


def ball_symbol(d: Delivery) -> str:
    """A compact mark for one ball: '•' dot, '4', 'W', '1wd', '2nb', '1lb', '5p'..."""
    if any(counts_as_wicket(w) for w in d.wickets):
        return "W"
    e = d.extras
    if e.wides:
        return f"{e.wides}wd"
    if e.noballs:
        return f"{d.runs_batter + e.noballs + e.byes + e.legbyes}nb"
    parts = []
    if d.runs_batter or not (e.byes or e.legbyes or e.penalty):
        parts.append("•" if d.runs_batter == 0 else str(d.runs_batter))
    if e.byes:
        parts.append(f"{e.byes}b")
    if e.legbyes:
        parts.append(f"{e.legbyes}lb")
    if e.penalty:
        parts.append(f"{e.penalty}p")
    return "+".join(parts)


# --- the result (Law 16) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InningsFacts:
    """What Law 16 needs to know about one innings."""

    batting: str
    bowling: str
    super_over: bool
    runs: int
    wickets: int
    legal_balls: int
    ended: bool
    end_reason: str | None
    target_runs: int | None  # for the second innings of a pair
    target_balls: int | None
    revised: bool  # the target was set by DLS (playing conditions), not by Law 16 alone
    reached_in_play: bool  # False when a par was set after play stopped with the side past it


@dataclass(frozen=True, slots=True)
class PairResult:
    winner: str | None  # None: a tie
    kind: str  # "runs" | "wickets" | "tie"
    margin: int | None
    balls_left: int | None
    dls: bool


def pair_result(second: InningsFacts) -> PairResult | None:
    """The result of a pair of innings, judged when the second ends; None while undecided."""
    target, dls = second.target_runs, second.revised
    if target is None:
        return None
    if second.runs >= target and second.reached_in_play:
        # Law 16.7: the side batting last wins by the number of wickets still then to fall.
        left = (second.target_balls - second.legal_balls) if second.target_balls else None
        margin = wickets_limit(second.super_over) - second.wickets
        return PairResult(second.batting, "wickets", margin, left, dls)
    if not second.ended:
        return None
    par = target - 1
    if second.runs > par:
        # DLS playing conditions: play stopped with the chasing side ahead of par. The importer
        # now says so with a par_score MatchDecided; this keeps streams that carry only the par
        # (a TargetRevised after the stop) folding as they did.
        return PairResult(second.batting, "runs", second.runs - par, None, dls)
    if second.runs == par:
        # Law 16.5.1 (a tie); under DLS, level with par when play ended.
        return PairResult(None, "tie", None, None, dls)
    # Law 16.7: the side fielding last wins by the runs it was ahead.
    return PairResult(second.bowling, "runs", par - second.runs, None, dls)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
