"""The path of one event, without I/O: validate, check the sequence, hold gaps, fold, derive.

``classify`` turns wire bytes into an event or a typed rejection. A ``MatchProcessor`` owns one
match's state and returns outcomes for the shell (``streams.engine``) to carry out:

* ``Accepted``: folded; the shell commits the view, emits the notifications, stores the event;
* ``Duplicate``: the same event (``event_id``) already folded or held at its ``seq``; absorbed
  (counted, stored again only if absent);
* ``Held``: ``seq`` ahead of the next expected one; kept until the gap fills (then it comes
  back as ``Accepted``). A gap is never rejected: once it has been open for ``gap_timeout``
  the shell looks for the missing events in the event store (``gap_due``, ``missing``; a
  previous owner may have stored them) and offers them; otherwise they wait for the producer;
* ``Dropped``: ahead of a gap that already holds ``max_held`` events: not kept in memory and
  not acknowledged; once the gap fills the shell has the partition re-read
  (``reread_needed``), which brings it back;
* ``Failed``: a bug raised on the event (the fold or the derivation, not a refusal): the shell
  dead-letters it as ``internal_error`` with its traceback; the state stays before it;
* ``Rejected``: goes to the dead-letter topic with its ``Reason`` (``schemas.deadletter``);
  among them ``conflict``, an event at a ``seq`` that already holds (or holds back) another
  ``event_id``.

Which of these an event is, by its ``seq`` and ``event_id``, is decided by
``streams.fold.check_sequence`` alone. It needs the ``event_id`` already at the event's seq:
for a folded seq the ``Folder`` reads it from the card (a fold ``Card`` keeps the match's whole
accepted log, recovered from the event store after a restart or a rebalance), for a held one
the processor has it. So no memory is added and nothing is guessed; the bound is the one the
fold already has, a match's events (a few hundred for a T20), for the matches the worker owns.

Every outcome carries the caller's opaque ``token`` (the Kafka message to ack) so nothing is
acknowledged before the shell has done what the outcome asks. Each ``Accepted`` also carries
the state after it, so the shell can put the match back to its last good position when an
effect fails on a bug (``restore``).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import codec, signing
from schemas.deadletter import Reason
from schemas.events import Event, EventValidationError
from streams.fold import (
    DuplicateEvent,
    FoldError,
    SequenceConflict,
    SequenceGap,
    check_sequence,
)
from streams.notify import NotifyState, derive

MATCH_CREATED = "match.created"


class Folder(Protocol):
    """The scorecard fold as the pipeline needs it (bound to ``streams.fold``)."""

    def initial(self, match_id: str) -> Any: ...

    def apply(self, card: Any, event: Event) -> Any: ...

    def event_id(self, card: Any, seq: int) -> str | None:
        """The ``event_id`` folded into ``card`` at ``seq``; known for every seq up to the
        card's position, ``None`` above it."""
        ...

    def doc(self, card: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    event: Event
    raw: bytes
    token: Any
    prev_seq: int
    before: dict[str, Any] | None
    after: dict[str, Any]
    notes: tuple[Any, ...]
    state: MatchState | None = None  # the match after this event


@dataclass(frozen=True, slots=True)
class Duplicate:
    event: Event
    raw: bytes
    token: Any


@dataclass(frozen=True, slots=True)
class Held:
    event: Event
    token: Any


@dataclass(frozen=True, slots=True)
class Dropped:
    """Ahead of a gap that holds ``max_held`` events already: neither kept nor acked."""

    event: Event
    token: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """A bug raised on this event (not the event's fault): the shell dead-letters it as
    ``internal_error`` with the traceback; the match stays at its position before it."""

    event: Event
    raw: bytes
    token: Any
    error: Exception


@dataclass(frozen=True, slots=True)
class Rejected:
    raw: bytes
    token: Any
    reason: Reason
    detail: str
    match_id: str | None = None
    seq: int | None = None
    type: str | None = None


Outcome = Accepted | Duplicate | Held | Dropped | Failed | Rejected


def source_allowed(source: str, allowed: Sequence[str]) -> bool:
    return _allowed(source, tuple(allowed))


@functools.lru_cache(maxsize=4096)
def _allowed(source: str, allowed: tuple[str, ...]) -> bool:
    """Memoised: a feed has a handful of sources, and fnmatch on every event showed up in
    the worker's profile."""
    return any(fnmatch.fnmatchcase(source, pattern) for pattern in allowed)


def classify(raw: bytes, token: Any, allowed: Sequence[str],
             scorers: signing.Registry | None = None) -> Event | Rejected:
    """The event in ``raw``, or why it is refused. With ``scorers``, ``raw`` must be signed
    by a registered scorer (``schemas.signing``) that may claim the event's source, and what
    is decoded is the signed body."""
    body, scorer = raw, None
    if scorers is not None:
        try:
            scorer, body = signing.verify(raw, scorers)
        except signing.SignatureError as exc:
            return _unsigned(raw, token, str(exc))
    try:
        event = codec.decode(body)
    except EventValidationError as exc:
        return Rejected(raw, token, Reason.INVALID, str(exc))
    if not source_allowed(event.source, allowed) or (scorer and not scorer.allows(event.source)):
        by = f" for scorer {scorer.id!r}" if scorer else ""
        return Rejected(raw, token, Reason.UNAUTHORISED,
                        f"source {event.source!r} not allowed{by}",
                        event.match_id, event.seq, event.payload.TYPE)
    return event


def _unsigned(raw: bytes, token: Any, detail: str) -> Rejected:
    """A ``bad_signature`` reject, with the ids the bytes claim when they decode at all."""
    try:
        claimed = codec.decode(raw)
    except EventValidationError:
        return Rejected(raw, token, Reason.BAD_SIGNATURE, detail)
    return Rejected(raw, token, Reason.BAD_SIGNATURE, detail, claimed.match_id, claimed.seq,
                    claimed.payload.TYPE)


def reject(event: Event, raw: bytes, token: Any, reason: Reason, detail: str) -> Rejected:
    return Rejected(raw, token, reason, detail, event.match_id, event.seq, event.payload.TYPE)


@dataclass
class MatchState:
    match_id: str
    seq: int = 0
    card: Any = None
    doc: dict[str, Any] | None = None
    notify: NotifyState = field(default_factory=NotifyState)
    ts: str = ""  # the last event's instant, for the view update that re-seeds a view


MAX_HELD = 2000  # events held per match behind a gap; a whole T20 is ~250-350 events
GAP_RECHECK_MAX = 60.0  # seconds between two looks in the event store for a lasting gap


class MatchProcessor:
    """One match's sequence discipline and fold. ``epoch`` is the shell's bookkeeping of the
    Redis view's epoch."""

    def __init__(self, state: MatchState, folder: Folder, gap_timeout: float,
                 epoch: int = 0, max_held: int = MAX_HELD) -> None:
        self.state = state
        self.folder = folder
        self.gap_timeout = gap_timeout
        self.epoch = epoch
        self.max_held = max_held
        self.held: dict[int, tuple[Event, bytes, Any]] = {}
        self.gap_since: float | None = None
        self._gap_check: float | None = None  # when the shell next looks in the store
        self._dropped = False  # events beyond max_held were let go since the gap opened

    def offer(self, event: Event, raw: bytes, token: Any, now: float) -> list[Outcome]:
        try:
            verdict = self._check(event)
        except ValueError as exc:  # a folded seq whose event is unknown: a bug, not the event's
            return [Failed(event, raw, token, exc)]
        if isinstance(verdict, DuplicateEvent):
            return [Duplicate(event, raw, token)]
        if isinstance(verdict, SequenceConflict):
            return [reject(event, raw, token, Reason.CONFLICT, verdict.reason)]
        if isinstance(verdict, SequenceGap):
            return [self._hold(event, raw, token, now)]
        out = [self._apply(event, raw, token)]
        while self.state.seq + 1 in self.held:  # a failed one stays unfolded: the loop ends
            out.append(self._apply(*self.held.pop(self.state.seq + 1)))
        if not self.held:
            self.gap_since = self._gap_check = None
        return out

    def _hold(self, event: Event, raw: bytes, token: Any, now: float) -> Held | Dropped:
        if len(self.held) >= self.max_held:
            self._dropped = True
            return Dropped(event, token)
        self.held[event.seq] = (event, raw, token)
        if self.gap_since is None:
            self.gap_since, self._gap_check = now, now + self.gap_timeout
        return Held(event, token)

    def _check(self, event: Event) -> DuplicateEvent | SequenceGap | SequenceConflict | None:
        held = self.held.get(event.seq)
        holder = (held[0].event_id if held is not None
                  else self.folder.event_id(self.state.card, event.seq))
        return check_sequence(self.state.seq, event, holder)

    def missing(self) -> tuple[int, int] | None:
        """The seqs the held events wait for (first, last), or ``None`` without a gap."""
        if not self.held:
            return None
        return self.state.seq + 1, min(self.held) - 1

    def gap_due(self, now: float) -> bool:
        """True once a gap has been open for ``gap_timeout``, then each time its age doubles
        (at most ``GAP_RECHECK_MAX`` apart): when the shell should look for the missing events
        in the event store."""
        if self._gap_check is None or self.gap_since is None or now < self._gap_check:
            return False
        waited = max(self.gap_timeout, now - self.gap_since)
        self._gap_check = now + min(GAP_RECHECK_MAX, waited)
        return True

    def reread_needed(self) -> bool:
        """Events were dropped (``Dropped``) and the gap they waited behind is filled: the
        shell must have the partition re-read from its oldest unacknowledged message. Asking
        clears the flag."""
        if self._dropped and not self.held:
            self._dropped = False
            return True
        return False

    def restore(self, state: MatchState, rehold: Iterable[tuple[Event, bytes, Any]],
                now: float) -> None:
        """Back to ``state``, the last good position, after the next event failed on a bug in
        the shell; ``rehold`` (events folded after that one) wait again behind the gap it
        leaves. The fold's cards are immutable views, so the old state is still exact."""
        self.state = state
        for event, raw, token in rehold:
            self.held[event.seq] = (event, raw, token)
        if self.held and self.gap_since is None:
            self.gap_since, self._gap_check = now, now + self.gap_timeout

    def _apply(self, event: Event, raw: bytes, token: Any) -> Outcome:
        s = self.state
        try:
            card = self.folder.apply(s.card, event)
            doc = self.folder.doc(card)
            notify, notes = derive(s.notify, s.doc, doc, event)
        except FoldError as exc:  # the fold refuses the event: invalid in itself
            return reject(event, raw, token, Reason.FOLD_REJECTED, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in the fold or the derivation, on this event
            return Failed(event, raw, token, exc)
        before, prev = s.doc, s.seq
        self.state = MatchState(s.match_id, event.seq, card, doc, notify, codec.format_ts(event.ts))
        return Accepted(event, raw, token, prev, before, doc, tuple(notes), self.state)


def replay_state(match_id: str, events: Iterable[Event], folder: Folder) -> MatchState:
    """The state after folding a stored log: its contiguous prefix from seq 1."""
    proc = MatchProcessor(MatchState(match_id, card=folder.initial(match_id)), folder, 0.0)
    for event in events:
        if proc._check(event) is not None:
            break
        if not isinstance(proc._apply(event, b"", None), Accepted):
            break
    return proc.state


def all_notes(state: MatchState) -> list[Any]:
    """Every notification the state's events caused, in seq order."""
    return [n for seq in sorted(state.notify.caused) for n in state.notify.caused[seq]]


class ScorecardFolder:
    """``Folder`` bound to ``streams.fold``: cards are fold ``Card``s, documents the
    ``schemas.scorecard`` JSON."""

    def initial(self, match_id: str) -> Any:
        from streams.fold import Card

        return Card.empty(match_id)

    def apply(self, card: Any, event: Event) -> Any:
        from streams.fold import apply

        return apply(card, event)

    def event_id(self, card: Any, seq: int) -> str | None:
        return card.event_id(seq)

    def doc(self, card: Any) -> dict[str, Any]:
        return dict(card.scorecard().to_json())
