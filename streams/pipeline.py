"""The path of one event, without I/O: validate, check the sequence, hold gaps, fold, derive.

``classify`` turns wire bytes into an event or a typed rejection. A ``MatchProcessor`` owns one
match's state and returns outcomes for the shell (``streams.engine``) to carry out:

* ``Accepted``: folded; the shell commits the view, emits the notifications, stores the event;
* ``Duplicate``: the same event (``event_id``) already folded or held at its ``seq``; absorbed
  (counted, stored again only if absent);
* ``Held``: ``seq`` ahead of the next expected one; kept until the gap fills (then it comes
  back as ``Accepted``) or ``gap_timeout`` passes (then it comes back ``Rejected``);
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
acknowledged before the shell has done what the outcome asks.
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
from streams.fold import DuplicateEvent, SequenceConflict, SequenceGap, check_sequence
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
class Rejected:
    raw: bytes
    token: Any
    reason: Reason
    detail: str
    match_id: str | None = None
    seq: int | None = None
    type: str | None = None


Outcome = Accepted | Duplicate | Held | Rejected


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


class MatchProcessor:
    """One match's sequence discipline and fold. ``epoch`` is the shell's bookkeeping of the
    Redis view's epoch."""

    def __init__(self, state: MatchState, folder: Folder, gap_timeout: float,
                 epoch: int = 0) -> None:
        self.state = state
        self.folder = folder
        self.gap_timeout = gap_timeout
        self.epoch = epoch
        self.held: dict[int, tuple[Event, bytes, Any]] = {}
        self.gap_since: float | None = None

    def offer(self, event: Event, raw: bytes, token: Any, now: float) -> list[Outcome]:
        verdict = self._check(event)
        if isinstance(verdict, DuplicateEvent):
            return [Duplicate(event, raw, token)]
        if isinstance(verdict, SequenceConflict):
            return [reject(event, raw, token, Reason.CONFLICT, verdict.reason)]
        if isinstance(verdict, SequenceGap):
            self.held[event.seq] = (event, raw, token)
            if self.gap_since is None:
                self.gap_since = now
            return [Held(event, token)]
        out = [self._apply(event, raw, token)]
        while self.state.seq + 1 in self.held:
            out.append(self._apply(*self.held.pop(self.state.seq + 1)))
        if not self.held:
            self.gap_since = None
        return out

    def _check(self, event: Event) -> DuplicateEvent | SequenceGap | SequenceConflict | None:
        held = self.held.get(event.seq)
        holder = (held[0].event_id if held is not None
                  else self.folder.event_id(self.state.card, event.seq))
        return check_sequence(self.state.seq, event, holder)

    def expire(self, now: float) -> list[Outcome]:
        """Report held events once the gap has been open for ``gap_timeout`` seconds."""
        if self.gap_since is None or now - self.gap_since < self.gap_timeout:
            return []
        first = min(self.held)
        detail = f"missing seq {self.state.seq + 1}..{first - 1} for {self.gap_timeout:g}s"
        out: list[Outcome] = [reject(e, raw, token, Reason.SEQUENCE_GAP, detail)
                              for _, (e, raw, token) in sorted(self.held.items())]
        self.held.clear()
        self.gap_since = None
        return out

    def _apply(self, event: Event, raw: bytes, token: Any) -> Outcome:
        s = self.state
        try:
            card = self.folder.apply(s.card, event)
            doc = self.folder.doc(card)
            notify, notes = derive(s.notify, s.doc, doc, event)
        except Exception as exc:  # a fold refusal must not wedge the partition
            return reject(event, raw, token, Reason.FOLD_REJECTED, f"{type(exc).__name__}: {exc}")
        before, prev = s.doc, s.seq
        self.state = MatchState(s.match_id, event.seq, card, doc, notify, codec.format_ts(event.ts))
        return Accepted(event, raw, token, prev, before, doc, tuple(notes))


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
