"""Per-innings accumulators for the fold: mutable, private, owned by exactly one fold state.

The fold keeps these mutable so a ball costs a few attribute updates instead of a copy of the
card (see :mod:`streams.fold` for how purity is kept observable). The public, immutable
:class:`~schemas.scorecard.InningsCard` is built from them on demand by :meth:`Innings.card`.
"""

from __future__ import annotations

from collections import deque

from schemas.events import Delivery, Wicket
from schemas.scorecard import (
    BattingLine,
    BowlingLine,
    ExtrasLine,
    FallOfWicket,
    InningsCard,
    Partnership,
)
from streams import rules

LAST_BALLS = 12


class Batter:
    __slots__ = ("name", "runs", "balls", "fours", "sixes", "wicket", "bowler")

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs = self.balls = self.fours = self.sixes = 0
        self.wicket: Wicket | None = None  # how the batter left, if they did
        self.bowler = ""

    def line(self) -> BattingLine:
        w = self.wicket
        sr = round(100.0 * self.runs / self.balls, 2) if self.balls else None
        return BattingLine(self.name, self.runs, self.balls, self.fours, self.sixes,
                           w is not None and rules.is_out(w.kind),
                           rules.dismissal_text(w, self.bowler) if w else "not out", sr)


class Bowler:
    __slots__ = ("name", "legal", "runs", "wickets", "wides", "noballs", "maidens", "overs",
                 "in_over", "loose")

    def __init__(self, name: str) -> None:
        self.name = name
        self.legal = self.runs = self.wickets = self.wides = self.noballs = 0
        self.maidens = 0
        self.overs = 0  # whole overs bowled alone, as the umpire called them (Law 17.5)
        self.in_over = 0  # legal balls in the over now being bowled
        self.loose = 0  # legal balls of overs shared with another bowler (Law 17.8)

    def line(self, bpo: int) -> BowlingLine:
        eco = round(self.runs * bpo / self.legal, 2) if self.legal else None
        loose = self.loose + self.in_over
        whole = self.overs + loose // bpo
        return BowlingLine(self.name, self.legal, rules.overs_text(whole, loose % bpo),
                           self.maidens, self.runs, self.wickets, self.wides, self.noballs, eco)


class Innings:
    """Everything the scorecard shows about one innings, updated ball by ball."""

    __slots__ = (
        "number", "batting", "bowling", "super_over", "bpo", "runs", "wickets", "legal",
        "wides", "noballs", "byes", "legbyes", "penalty", "batters", "bowlers", "fow",
        "part_runs", "part_balls", "striker", "non_striker", "bowler", "over_no", "over_legal",
        "over_closed", "over_balls", "over_bowlers", "over_runs", "over_maiden",
        "overs_done", "last", "ended", "end_reason", "target_runs", "target_balls",
    )

    def __init__(self, number: int, batting: str, bowling: str, super_over: bool,
                 bpo: int) -> None:
        self.number, self.batting, self.bowling = number, batting, bowling
        self.super_over, self.bpo = super_over, bpo
        self.runs = self.wickets = self.legal = 0
        self.wides = self.noballs = self.byes = self.legbyes = self.penalty = 0
        self.batters: dict[str, Batter] = {}  # insertion order is batting order
        self.bowlers: dict[str, Bowler] = {}  # insertion order is bowling order
        self.fow: list[FallOfWicket] = []
        self.part_runs = self.part_balls = 0
        self.striker = self.non_striker = self.bowler = ""
        self.over_no = -1
        self.over_legal = 0
        self.over_closed = True
        self.over_balls: list[Delivery] = []
        self.over_bowlers: list[Bowler] = []
        self.over_runs = 0
        self.over_maiden = False
        self.overs_done = 0
        self.last: deque[Delivery] = deque(maxlen=LAST_BALLS)
        self.ended = False
        self.end_reason: str | None = None
        self.target_runs: int | None = None  # set only by a revision; else derived
        self.target_balls: int | None = None

    # --- one ball ---------------------------------------------------------------------------

    def ball(self, d: Delivery) -> None:
        if d.over != self.over_no:
            self._new_over(d)
        e = d.extras
        wides, noballs = e.wides, e.noballs
        total = d.runs_batter + wides + noballs + e.byes + e.legbyes + e.penalty
        self.runs += total
        if wides or noballs or e.byes or e.legbyes or e.penalty:
            self.wides += wides
            self.noballs += noballs
            self.byes += e.byes
            self.legbyes += e.legbyes
            self.penalty += e.penalty
        legal = not (wides or noballs)  # rules.is_legal, inlined: this runs for every ball
        bat = self._at_crease(d)
        self._batter_ball(bat, d, wides)
        self._bowler_ball(d, legal, d.runs_batter + wides + noballs)
        self.part_runs += total
        if legal:
            self.legal += 1
            self.part_balls += 1
            self.over_legal += 1
        self.over_balls.append(d)
        self.last.append(d)
        if d.wickets:
            for w in d.wickets:
                self._wicket(w, d.bowler)
        if legal and not self.over_closed and rules.over_complete(self.over_legal, self.bpo):
            self._close_over()

    def _at_crease(self, d: Delivery) -> Batter:
        batters = self.batters
        bat = batters.get(d.batter)
        if bat is None:
            bat = batters[d.batter] = Batter(d.batter)
        elif bat.wicket is not None and not rules.is_out(bat.wicket.kind):
            bat.wicket = None  # Law 25.4.2: a batter retired not out may resume the innings
        other = batters.get(d.non_striker)
        if other is None:
            batters[d.non_striker] = Batter(d.non_striker)
        elif other.wicket is not None and not rules.is_out(other.wicket.kind):
            other.wicket = None
        if d.batter != self.striker and d.batter != self.non_striker or (
                d.non_striker != self.striker and d.non_striker != self.non_striker):
            self.part_runs = self.part_balls = 0  # a new pair at the crease
        self.striker, self.non_striker = d.batter, d.non_striker
        return bat

    def _batter_ball(self, bat: Batter, d: Delivery, wides: int) -> None:
        if not wides:  # rules.faced, inlined
            bat.balls += 1
        r = d.runs_batter
        if r:
            bat.runs += r
            if r == 4 and not d.non_boundary:  # rules.is_four
                bat.fours += 1
            elif r == 6 and not d.non_boundary:  # rules.is_six
                bat.sixes += 1

    def _bowler_ball(self, d: Delivery, legal: bool, charged: int) -> None:
        bowl = self.bowlers.get(d.bowler)
        if bowl is None:
            bowl = self.bowlers[d.bowler] = Bowler(d.bowler)
        self.bowler = d.bowler
        bowl.runs += charged
        if legal:
            bowl.legal += 1
            if not self.over_closed:
                bowl.in_over += 1
        else:
            bowl.wides += d.extras.wides
            bowl.noballs += d.extras.noballs
        if bowl not in self.over_bowlers:
            self.over_bowlers.append(bowl)  # Law 17.8: a bowler unable to finish is replaced
        self.over_runs += charged
        if self.over_maiden and charged:
            self.over_maiden = False  # Law 17.5: a miscounted long over spoiled the maiden
            bowl.maidens -= 1

    def _wicket(self, w: Wicket, bowler: str) -> None:
        out = self.batters.get(w.player_out)
        if out is None:
            out = self.batters[w.player_out] = Batter(w.player_out)
        out.wicket, out.bowler = w, bowler
        if rules.counts_as_wicket(w):
            self.wickets += 1
            self.fow.append(FallOfWicket(self.wickets, self.runs, w.player_out, self.overs()))
            if rules.bowler_credited(w):
                self.bowlers[bowler].wickets += 1
        self.part_runs = self.part_balls = 0

    # --- overs (Law 17) -----------------------------------------------------------------------

    def _new_over(self, d: Delivery) -> None:
        if not self.over_closed:
            self._close_over()  # Law 17.5: the umpire called "over" early; the over stands
        for bowl in self.over_bowlers:
            bowl.in_over = 0  # balls past the umpire's "over" (Law 17.5) stay uncounted
        self.over_no, self.over_legal, self.over_closed = d.over, 0, False
        self.over_balls = []
        self.over_bowlers = []
        self.over_runs = 0
        self.over_maiden = False

    def _close_over(self) -> None:
        self.over_closed = True
        self.overs_done += 1
        if len(self.over_bowlers) != 1:
            for bowl in self.over_bowlers:
                bowl.loose += bowl.in_over
                bowl.in_over = 0
            return
        bowl = self.over_bowlers[0]
        bowl.overs += 1
        bowl.in_over = 0
        if self.over_runs == 0:
            # Scoring convention (not a Law): a maiden is a whole over by one bowler with no
            # runs charged to him; byes and leg byes do not spoil it.
            bowl.maidens += 1
            self.over_maiden = True

    def end(self, reason: str) -> None:
        self.ended, self.end_reason = True, reason

    def add_penalty(self, runs: int) -> None:
        """Law 41.17: penalty runs are extras of the side they are awarded to."""
        self.penalty += runs
        self.runs += runs
        self.part_runs += runs

    def overs(self) -> str:
        if self.over_closed:
            return rules.overs_text(self.overs_done, 0)
        return rules.overs_text(self.overs_done, self.over_legal)

    # --- the public view ----------------------------------------------------------------------

    def card(self, target: tuple[int, int, bool] | None) -> InningsCard:
        runs, legal, bpo = self.runs, self.legal, self.bpo
        rr = round(runs * bpo / legal, 2) if legal else None
        req = None
        if target and not self.ended and runs < target[0] and target[1] > legal:
            req = round((target[0] - runs) * bpo / (target[1] - legal), 2)
        live = not self.ended
        part = (Partnership((self.striker, self.non_striker), self.part_runs, self.part_balls)
                if self.striker else None)
        return InningsCard(
            self.number, self.batting, self.bowling, self.super_over, runs, self.wickets, legal,
            self.overs(),
            ExtrasLine(self.wides, self.noballs, self.byes, self.legbyes, self.penalty),
            target[0] if target else None, target[1] if target else None,
            target[2] if target else False, rr, req,
            tuple(b.line() for b in self.batters.values()),
            tuple(b.line(bpo) for b in self.bowlers.values()),
            tuple(self.fow), part,
            (self.striker, self.non_striker) if live and self.striker else (),
            self.bowler if live and self.bowler else None,
            tuple(rules.ball_symbol(d) for d in self.over_balls),
            tuple(rules.ball_symbol(d) for d in self.last),
            self.ended, self.end_reason)
