"""The scorecard fold: ``apply(card, event) -> card``, pure, and ``replay(events)`` a reduce.

Outcomes and errors::

    step(card, event) -> Applied | DuplicateEvent | SequenceGap | FoldRejected   (never raises)
    check_sequence(position, event, holder) -> DuplicateEvent | SequenceGap
                                               | SequenceConflict | None   (None: fold it)
    apply(card, event) -> Card       absorbs a DuplicateEvent (returns ``card``), raises
                                     FoldError (SequenceGapError, RejectedEventError) otherwise

    Exception
     └── FoldError                 the event cannot be folded now; ``.outcome`` says why
          ├── SequenceGapError     ``seq`` is ahead of the card: fetch the missing events
          └── RejectedEventError   the event contradicts the match (wrong match, no innings,
                                   a correction of something that is not a ball, ...)

A :class:`Card` is an immutable handle on a fold state at a position ``seq``. For speed, the
state behind the newest card is a set of mutable per-innings accumulators updated in place, so a
ball costs a few attribute writes rather than a copy of the card. Purity stays observable:
the state also keeps the accepted event log (append-only), and a card that is no longer the
newest on its state (someone applied an event to it, or to a later card) rebuilds a private
state by re-folding its own prefix of the log the first time it is read or extended. Reading an
old card is therefore always correct and costs a replay (about a millisecond for a T20 match);
the common path, folding a stream forward, never copies. A correction re-derives the state from
the log with the corrected ball in place, as if it had been right from the start.

Sequence discipline: ``seq`` starts at 1 and has no gaps, so ``card.seq`` is also the length of
the accepted log. :func:`check_sequence` is the one place that tells the next event from a
duplicate, a gap or a conflict; ``step`` and the streams pipeline (``streams.pipeline``, which
also holds events that arrive ahead of a gap) both ask it. An event at or below ``card.seq`` is
a duplicate (absorbed) if its ``event_id`` matches the one accepted there, and a
:class:`SequenceConflict` (a ``FoldRejected``) if it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

from schemas.events import (
    Delivery,
    DeliveryCorrected,
    DeliveryVoided,
    Event,
    InningsEnded,
    InningsStarted,
    MatchCreated,
    MatchDecided,
    PenaltyAwarded,
    TargetRevised,
    Toss,
)
from streams import rules
from streams.innings import Innings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from schemas.scorecard import Scorecard


@dataclass(frozen=True, slots=True)
class Applied:
    card: Card


@dataclass(frozen=True, slots=True)
class DuplicateEvent:
    seq: int
    event_id: str


@dataclass(frozen=True, slots=True)
class SequenceGap:
    expected: int
    got: int


@dataclass(frozen=True, slots=True)
class FoldRejected:
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class SequenceConflict(FoldRejected):
    """``seq`` already holds another event: ``accepted_id``, not this ``event_id``."""

    event_id: str
    accepted_id: str


Outcome = Applied | DuplicateEvent | SequenceGap | FoldRejected  # includes SequenceConflict


class FoldError(Exception):
    def __init__(self, outcome: SequenceGap | FoldRejected) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class SequenceGapError(FoldError):
    pass


class RejectedEventError(FoldError):
    pass


class _State:
    """The mutable side of a card: match facts, innings accumulators and the accepted log."""

    __slots__ = ("match_id", "log", "created", "toss", "innings", "decided", "par", "overrides",
                 "pending_penalties", "targets")

    def __init__(self, match_id: str | None) -> None:
        self.match_id = match_id
        self.log: list[Event] = []
        self._reset()

    def _reset(self) -> None:
        self.created: MatchCreated | None = None
        self.toss: Toss | None = None
        self.innings: list[Innings] = []
        self.decided: MatchDecided | None = None  # off the field: no result, bowl-out, ...
        self.par: MatchDecided | None = None  # the main pair judged on a par score (DLS/VJD)
        self.overrides: dict[int, Delivery | None] = {}
        self.pending_penalties: dict[int, int] = {}
        # innings -> (revision, the innings' runs when it was made)
        self.targets: dict[int, tuple[TargetRevised, int]] = {}

    @classmethod
    def from_log(cls, match_id: str | None, events: Iterable[Event]) -> _State:
        state = cls(match_id)
        for event in events:
            state.log.append(event)
            state.fold(event)
        return state

    def current(self) -> Innings | None:
        return self.innings[-1] if self.innings else None

    # --- checks: why an event cannot be folded now (None when it can) -------------------------

    def reject_reason(self, event: Event) -> str | None:
        p = event.payload
        if self.match_id is not None and event.match_id != self.match_id:
            return f"event for match {event.match_id!r} on card of {self.match_id!r}"
        if self.created is None:
            return None if type(p) is MatchCreated else "the first event must be match.created"
        if type(p) is Delivery:
            inn = self.current()
            if inn is None or inn.ended or inn.number != p.innings:
                return f"delivery for innings {p.innings}, which is not in progress"
            if p.wickets and _too_many_wickets(inn, p):
                return f"innings {inn.number} would have more than its wickets (Law 13)"
            return None
        check = _CHECKS.get(type(p))
        reason = check(self, p) if check else None
        if reason is None and type(p) in (DeliveryVoided, DeliveryCorrected):
            reason = self._simulate(event)
        return reason

    def _simulate(self, correction: Event) -> str | None:
        """A correction must leave a possible card: re-derive a trial state and look."""
        trial = _State.from_log(self.match_id, [*self.log, correction])
        for inn in trial.innings:
            if inn.wickets > rules.wickets_limit(inn.super_over):
                return f"the correction leaves innings {inn.number} with {inn.wickets} wickets"
        return None

    # --- folding one accepted event ---------------------------------------------------------------

    def fold(self, event: Event) -> None:
        p = event.payload
        if type(p) is Delivery:  # the hot path, ahead of the table lookup
            self.innings[-1].ball(p)
        else:
            _HANDLERS[type(p)](self, event)

    def rederive(self) -> None:
        """Fold the log again with every correction in place (the corrections are in the log).

        Corrections are rare (a few per match) and a T20 log is a few hundred events, so a
        re-fold (about a millisecond) is simpler and safer than undoing a ball in place.
        """
        self._reset()
        for event in self.log:
            p = event.payload
            if type(p) is DeliveryVoided:
                self.overrides[p.target_seq] = None
            elif type(p) is DeliveryCorrected:
                self.overrides[p.target_seq] = p.delivery
        for event in self.log:
            p = event.payload
            if type(p) is DeliveryVoided or type(p) is DeliveryCorrected:
                continue
            if event.seq in self.overrides:
                replacement = self.overrides[event.seq]
                if replacement is not None:
                    self.innings[-1].ball(replacement)
                continue
            self.fold(event)


def _too_many_wickets(inn: Innings, d: Delivery) -> bool:
    falling = sum(1 for w in d.wickets if rules.counts_as_wicket(w))
    return inn.wickets + falling > rules.wickets_limit(inn.super_over)


def _check_created(state: _State, p: MatchCreated) -> str | None:
    return "match.created may appear only once"


def _check_innings_started(state: _State, p: InningsStarted) -> str | None:
    inn = state.current()
    if inn is not None and not inn.ended:
        return f"innings {inn.number} has not ended"
    if p.innings != len(state.innings) + 1:
        return f"innings {p.innings} out of order (expected {len(state.innings) + 1})"
    teams = state.created.teams if state.created else ()
    if p.batting_team not in teams or p.bowling_team not in teams:
        return "innings teams are not the match's teams"
    return None


def _check_innings_ended(state: _State, p: InningsEnded) -> str | None:
    inn = state.current()
    if inn is None or inn.ended or inn.number != p.innings:
        return f"innings {p.innings} is not in progress"
    return None


def _check_target(state: _State, p: TargetRevised) -> str | None:
    if p.innings > len(state.innings) + 1:
        return f"innings {p.innings} is not the current or next innings"
    return None


def _check_penalty(state: _State, p: PenaltyAwarded) -> str | None:
    if p.innings <= len(state.innings):
        inn = state.innings[p.innings - 1]
        if inn.batting != p.team:
            return f"innings {p.innings} is batted by {inn.batting!r}, not {p.team!r}"
    elif state.created and p.team not in state.created.teams:
        return f"{p.team!r} is not playing"
    return None


def _check_decided(state: _State, p: MatchDecided) -> str | None:
    if state.created and p.winner is not None and p.winner not in state.created.teams:
        return f"{p.winner!r} is not playing"
    if p.kind == "par_score" and sum(1 for i in state.innings if not i.super_over) < 2:
        return "a par-score result needs the chase (the second innings) to have started"
    return None


def _check_correction(state: _State, p: DeliveryVoided | DeliveryCorrected) -> str | None:
    if p.target_seq > len(state.log):
        return f"seq {p.target_seq} has not happened"
    target = state.log[p.target_seq - 1].payload
    if type(target) is not Delivery:
        return f"seq {p.target_seq} is a {target.TYPE}, not a delivery"
    if type(p) is DeliveryCorrected and p.delivery.innings != target.innings:
        return "a corrected ball must stay in its innings"
    return None


_CHECKS: dict[type, Callable[[_State, Any], str | None]] = {
    MatchCreated: _check_created, InningsStarted: _check_innings_started,
    InningsEnded: _check_innings_ended, TargetRevised: _check_target,
    PenaltyAwarded: _check_penalty, MatchDecided: _check_decided,
    DeliveryVoided: _check_correction, DeliveryCorrected: _check_correction,
}


def _on_created(state: _State, event: Event) -> None:
    state.created = event.payload  # type: ignore[assignment]
    state.match_id = event.match_id


def _on_toss(state: _State, event: Event) -> None:
    state.toss = event.payload  # type: ignore[assignment]


def _on_innings_started(state: _State, event: Event) -> None:
    p: InningsStarted = event.payload  # type: ignore[assignment]
    assert state.created is not None
    inn = Innings(p.innings, p.batting_team, p.bowling_team, p.super_over,
                  state.created.balls_per_over)
    state.innings.append(inn)
    if p.innings in state.pending_penalties:
        inn.add_penalty(state.pending_penalties.pop(p.innings))


def _on_innings_ended(state: _State, event: Event) -> None:
    p: InningsEnded = event.payload  # type: ignore[assignment]
    state.innings[-1].end(p.reason)


def _on_target(state: _State, event: Event) -> None:
    p: TargetRevised = event.payload  # type: ignore[assignment]
    runs = state.innings[p.innings - 1].runs if p.innings <= len(state.innings) else 0
    state.targets[p.innings] = (p, runs)


def _on_penalty(state: _State, event: Event) -> None:
    p: PenaltyAwarded = event.payload  # type: ignore[assignment]
    if p.innings <= len(state.innings):
        state.innings[p.innings - 1].add_penalty(p.runs)
    else:  # Law 41.17: awarded before that innings starts, added when it does
        state.pending_penalties[p.innings] = state.pending_penalties.get(p.innings, 0) + p.runs


def _on_decided(state: _State, event: Event) -> None:
    p: MatchDecided = event.payload  # type: ignore[assignment]
    # A par decides the main pair only; a tie on par may still go to a bowl-out, so both stay.
    if p.kind == "par_score":
        state.par = p
    else:
        state.decided = p


def _on_correction(state: _State, event: Event) -> None:
    state.rederive()


_HANDLERS: dict[type, Callable[[_State, Event], None]] = {
    MatchCreated: _on_created, Toss: _on_toss, InningsStarted: _on_innings_started,
    InningsEnded: _on_innings_ended, TargetRevised: _on_target, PenaltyAwarded: _on_penalty,
    MatchDecided: _on_decided, DeliveryVoided: _on_correction, DeliveryCorrected: _on_correction,
}


class Card:
    """An immutable view of a match at position ``seq``. Build with :meth:`empty`."""

    __slots__ = ("_state", "_seq")

    def __init__(self, state: _State, seq: int) -> None:
        self._state = state
        self._seq = seq

    @classmethod
    def empty(cls, match_id: str | None = None) -> Card:
        return cls(_State(match_id), 0)

    @property
    def seq(self) -> int:
        """Position: the ``seq`` of the last event folded in (0 for an empty card)."""
        return self._seq

    @property
    def match_id(self) -> str | None:
        return self._view().match_id

    def event_id(self, seq: int) -> str | None:
        """The ``event_id`` accepted at ``seq``, ``None`` above this card's position. Every
        seq at or below it is known: the card keeps the match's accepted log (the fold needs
        it to re-derive corrections), so this costs no memory of its own."""
        if 1 <= seq <= self._seq:
            return self._state.log[seq - 1].event_id  # the prefix is the same on any state
        return None

    def events(self) -> tuple[Event, ...]:
        """The accepted events, corrections included, in order."""
        return tuple(self._state.log[: self._seq])

    def scorecard(self) -> Scorecard:
        from streams.document import build

        return build(self._view(), self._seq)

    def _view(self) -> _State:
        """The state exactly as of this card, rebuilt privately if the shared one moved on."""
        state = self._state
        if len(state.log) != self._seq:
            state = _State.from_log(state.match_id if self._seq else None,
                                    state.log[: self._seq])
            self._state = state  # a memo: the prefix is immutable, so this is the same card
        return state


def check_sequence(position: int, event: Event, holder: str | None
                   ) -> DuplicateEvent | SequenceGap | SequenceConflict | None:
    """Where ``event`` stands against a log whose last accepted seq is ``position``: ``None``
    when it is the next one (fold it), else the typed reason it is not.

    ``holder`` is the ``event_id`` of the event already at ``event.seq``: the accepted one at
    or below ``position``, or one the caller holds ahead of a gap; ``None`` if there is none.
    The same id is a duplicate, another id a conflict (two events claim one place in the
    match: neither replaces the other). The caller must know ``holder`` for every seq at or
    below ``position`` (a ``Card`` keeps its whole accepted log; see ``Card.event_id``), so
    an unknown one raises ``ValueError``: guessing "duplicate" would hide a conflict.
    """
    seq = event.seq
    if holder is not None:
        if holder == event.event_id:
            return DuplicateEvent(seq, event.event_id)
        return SequenceConflict(seq, f"seq {seq} already holds event {holder!r}, not "
                                     f"{event.event_id!r}", event.event_id, holder)
    if seq <= position:
        raise ValueError(f"seq {seq} is at or below {position}, but its event is unknown")
    if seq != position + 1:
        return SequenceGap(position + 1, seq)
    return None


def step(card: Card, event: Event) -> Outcome:
    """Fold one event into ``card`` and say what happened; never raises for a bad sequence."""
    seq = event.seq
    verdict = check_sequence(card._seq, event, card.event_id(seq))
    if verdict is not None:
        return verdict
    state = card._view()
    reason = state.reject_reason(event)
    if reason is not None:
        return FoldRejected(seq, reason)
    state.log.append(event)
    state.fold(event)
    return Applied(Card(state, seq))


def apply(card: Card, event: Event) -> Card:
    """Fold one event; a duplicate returns ``card`` unchanged, anything else unfoldable raises."""
    state, seq = card._state, event.seq
    # Fast path for the common case, an event on the newest card: the same checks as step()
    # (rejection reason included) without allocating an outcome.
    if (seq == card._seq + 1 == len(state.log) + 1 and state.created is not None
            and state.reject_reason(event) is None):
        state.log.append(event)
        state.fold(event)
        return Card(state, seq)
    outcome = step(card, event)
    if type(outcome) is Applied:
        return outcome.card
    if type(outcome) is DuplicateEvent:
        return card
    if type(outcome) is SequenceGap:
        raise SequenceGapError(outcome)
    raise RejectedEventError(outcome)  # type: ignore[arg-type]


def replay(events: Iterable[Event], card: Card | None = None) -> Card:
    """Left fold of ``events`` over ``card`` (an empty card by default)."""
    return reduce(apply, events, card if card is not None else Card.empty())
