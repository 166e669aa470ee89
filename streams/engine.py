"""The imperative shell around ``streams.pipeline``: recovery, view commits, outputs, acks.

Independent of faust, so it runs against the in-memory stores in tests and is driven by the
faust agent (``streams.app``) in the worker. Order of effects for an accepted event:

1. the view commit (card, position, history, notifications in Redis, one Lua script);
2. its notifications to the relay (``streams.relay``), which publishes them to Kafka exactly
   once, in transactions that also move the match's checkpoint;
3. the latest card to the compacted scorecards topic (conflated: ``streams.cards``);
4. the event into the store backlog; the Kafka message is acked only once it is in Cassandra,
   a card at or past it is on the scorecards topic and its notifications are committed, so the
   committed consumer offset never passes an event whose effects a restart could not redo.

A commit conflict means the view moved under us: flushed or restarted older (re-seeded from
this state under a new epoch), rebuilt under a new epoch (adopted), or advanced by another
worker after a rebalance (state recovered from the event store again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from schemas import codec
from schemas.deadletter import DeadLetter, Reason
from schemas.events import Event
from schemas.notifications import Notification, note_id
from schemas.signing import Registry
from schemas.view import ViewUpdate, make_update
from streams.cards import CardPublisher
from streams.eventstore import EventStore, EventStoreError, StoreBacklog, StoredEvent
from streams.metrics import Metrics
from streams.pipeline import (
    MATCH_CREATED,
    Accepted,
    Duplicate,
    Folder,
    MatchProcessor,
    MatchState,
    Outcome,
    Rejected,
    all_notes,
    classify,
    reject,
    replay_state,
)
from streams.relay import NoteKey, NoteRelay
from streams.viewstore import Position, Status, ViewStore, ViewWrite, next_epoch

log = logging.getLogger(__name__)

Ack = Callable[[], Any] | None


class Outputs(Protocol):
    async def scorecard(self, match_id: str, card: bytes) -> None: ...

    async def dead_letter(self, key: bytes | None, value: bytes) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    allowed_sources: Sequence[str]
    gap_timeout: float
    scorers: Registry | None = None  # events must be signed by one of these (None: unchecked)


def dlq_record(r: Rejected) -> bytes:
    """The ``match.events.dlq`` record of a reject (``schemas.deadletter``)."""
    return DeadLetter.of(r.reason, r.detail, r.raw, r.match_id, r.seq, r.type).encode()


def view_write(match_id: str, epoch: int, seq: int, prev: int, ts: str, before: Any,
               after: dict[str, Any], notes: Sequence[tuple[NoteKey, bytes]], now_ms: int,
               full: bool = False) -> ViewWrite:
    """``notes`` as ``note_records`` gives them: encoded once, for Redis and the relay."""
    update: ViewUpdate = make_update(match_id, epoch, seq, prev, ts, None if full else before,
                                     after)
    return ViewWrite(match_id, epoch, seq, prev, orjson.dumps(after), update.encode(),
                     tuple((note_id(*key), raw) for key, raw in notes), now_ms)


def _note_keys(notes: Sequence[Notification]) -> list[NoteKey]:
    """``(seq, index)`` of each note: its index among the notes its event caused."""
    out, counts = [], {}  # type: ignore[var-annotated]
    for n in notes:
        counts[n.seq] = counts.get(n.seq, -1) + 1
        out.append((n.seq, counts[n.seq]))
    return out


def note_records(notes: Sequence[Notification]) -> list[tuple[NoteKey, bytes]]:
    """Each note with its ``(seq, index)`` key, encoded."""
    return [(k, n.encode()) for k, n in zip(_note_keys(notes), notes, strict=True)]


class Engine:
    def __init__(self, folder: Folder, views: ViewStore, store: EventStore,
                 backlog: StoreBacklog, outputs: Outputs, config: EngineConfig,
                 relay: NoteRelay, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.views, self.store, self.backlog = folder, views, store, backlog
        self.outputs, self.config, self.clock, self.relay = outputs, config, clock, relay
        self.metrics = metrics or Metrics()
        self.matches: dict[str, MatchProcessor] = {}
        self.partitions: dict[str, int] = {}  # match -> its match.events partition
        self.cards = CardPublisher(outputs.scorecard)

    # -- entry points -----------------------------------------------------------------------

    async def handle(self, raw: bytes, ack: Ack = None, partition: int = 0) -> None:
        """One message, start to end (the lanes of ``streams.lanes`` run matches side by side).
        ``partition`` is the message's partition of ``match.events``: the relay's fencing
        scope for the match's notifications."""
        event = await self.admit(raw, ack)
        if event is not None:
            await self.handle_event(event, raw, ack, partition)

    async def admit(self, raw: bytes, ack: Ack = None) -> Event | None:
        """Validate and authorise; a reject goes to the DLQ here and ``None`` is returned."""
        first = classify(raw, ack, self.config.allowed_sources, self.config.scorers)
        if isinstance(first, Rejected):
            self.metrics.events_in.labels("?").inc()
            await self._run([first])
            return None
        self.metrics.events_in.labels(first.payload.TYPE).inc()
        return first

    async def handle_event(self, event: Event, raw: bytes, ack: Ack = None,
                           partition: int = 0) -> None:
        self.partitions[event.match_id] = partition
        proc = self.matches.get(event.match_id) or await self._recover(event.match_id, event)
        if proc is None:
            detail = "no match.created seen for this match"
            await self._run([reject(event, raw, ack, Reason.UNKNOWN_MATCH, detail)])
            return
        self.matches[event.match_id] = proc
        started = time.perf_counter()
        outcomes = proc.offer(event, raw, ack, self.clock())
        self.metrics.fold_seconds.observe(time.perf_counter() - started)
        await self._run(outcomes)

    async def tick(self) -> None:
        """Report gaps held for longer than the timeout (call about once a second)."""
        now = self.clock()
        for proc in list(self.matches.values()):
            await self._run(proc.expire(now))
        self.metrics.held.set(sum(len(p.held) for p in self.matches.values()))

    async def audit(self) -> int:
        """Re-seed views that vanished or went back (Redis flushed or restarted from an old
        snapshot) for matches this worker holds, even if no new event arrives. Call every few
        seconds; returns how many views were re-seeded."""
        fixed = 0
        for proc in list(self.matches.values()):
            if proc.state.seq == 0:
                continue
            pos = (await self.views.read(proc.state.match_id)).position
            if pos is None or pos.seq < proc.state.seq:
                await self._reseed(proc, pos)
                fixed += 1
        return fixed

    def forget(self, match_ids: Sequence[str] | None = None) -> None:
        """Drop in-memory state (e.g. partitions revoked); it is recovered on next sight."""
        for m in list(self.matches) if match_ids is None else match_ids:
            self.matches.pop(m, None)

    def relay_lost(self, partition: int, match_ids: list[str]) -> None:
        """Another worker fenced this one off ``partition``'s relay: it owns those matches."""
        self.forget(match_ids)

    # -- outcomes ---------------------------------------------------------------------------

    async def _run(self, outcomes: Sequence[Outcome]) -> None:
        for i, o in enumerate(outcomes):
            if isinstance(o, Accepted):
                try:
                    await self._accepted(o)
                except ViewMovedError as exc:
                    await self._after_move(exc.match_id, outcomes[i:])
                    return
            elif isinstance(o, Duplicate):
                self.metrics.duplicates.inc()
                e, ack = o.event, _acker(o.token)
                await self.backlog.put(_stored(e, o.raw), self._gated(e, ack), if_absent=True)
            elif isinstance(o, Rejected):
                if o.reason is Reason.CONFLICT:  # two events claim one seq: a producer bug
                    log.error("sequence conflict: event dead-lettered",
                              extra={"match_id": o.match_id, "seq": o.seq, "detail": o.detail})
                self.metrics.rejects.labels(o.reason.value).inc()
                key = o.match_id.encode() if o.match_id else None
                await self.outputs.dead_letter(key, dlq_record(o))
                await _call(_acker(o.token))

    async def _accepted(self, o: Accepted) -> None:
        e = o.event
        proc = self.matches[e.match_id]
        records = note_records(o.notes)
        card = await self._commit(proc, o, records)
        if records:
            self.relay.publish(e.match_id, self._partition(e.match_id), records)
            for n in o.notes:
                self.metrics.notifications.labels(n.kind.value).inc()
        self.cards.update(e.match_id, e.seq, card or orjson.dumps(o.after))
        ack = self._gated(e, _acker(o.token))
        await self.backlog.put(_stored(e, o.raw),
                               lambda: self.cards.gate(e.match_id, e.seq, ack))
        self.metrics.events_out.labels(e.payload.TYPE).inc()
        self.metrics.backlog.set(len(self.backlog))
        self.metrics.store_up.set(1 if self.backlog.healthy else 0)

    def _partition(self, match_id: str) -> int:
        return self.partitions.get(match_id, 0)

    def _gated(self, e: Event, ack: Callable[[], Any] | None) -> Callable[[], Any] | None:
        """``ack`` held until the notifications caused at or before ``e`` are published."""
        if ack is None:
            return None
        return lambda: self.relay.gate(e.match_id, self._partition(e.match_id), e.seq, ack)

    async def _commit(self, proc: MatchProcessor, o: Accepted,
                      records: Sequence[tuple[NoteKey, bytes]]) -> bytes | None:
        """Commit the view; returns the card's bytes as written (None if it was re-seeded)."""
        e = o.event
        ts = codec.format_ts(e.ts)
        for _ in range(5):
            w = view_write(e.match_id, proc.epoch, e.seq, o.prev_seq, ts, o.before, o.after,
                           records, _now_ms())
            started = time.perf_counter()
            result = await self.views.commit(w)
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            if result.status is not Status.CONFLICT:
                return w.card
            stored = result.stored
            if stored is not None and stored.seq == o.prev_seq:
                proc.epoch = stored.epoch  # rebuilt under a new epoch: adopt it
                continue
            if stored is None or stored.seq < o.prev_seq:
                await self._reseed(proc, stored)  # flushed, or restarted from an old snapshot
                return None
            raise ViewMovedError(e.match_id, stored)  # another worker advanced it
        raise ViewMovedError(e.match_id, None)

    async def _reseed(self, proc: MatchProcessor, stored: Position | None) -> None:
        s = proc.state
        if s.doc is None:
            return
        proc.epoch = next_epoch(stored, _now_ms())
        w = view_write(s.match_id, proc.epoch, s.seq, 0, _ts_of(s), None, s.doc,
                       note_records(all_notes(s)), _now_ms(), full=True)
        await self.views.reset(w)
        log.warning("view re-seeded", extra={"match_id": s.match_id, "epoch": proc.epoch,
                                             "seq": s.seq})

    # -- recovery ---------------------------------------------------------------------------

    async def _recover(self, match_id: str, event: Any) -> MatchProcessor | None:
        """The match's state from the event store, its view position from Redis."""
        view = await self.views.read(match_id)
        created = event.payload.TYPE == MATCH_CREATED and event.seq == 1
        # A match.created nobody has a view of is a new match: no need to wait for the store.
        fresh = created and view.position is None
        events = [codec.decode(e.body) for e in await self._load(match_id, once=fresh)]
        if not events and not created:
            return None
        state = replay_state(match_id, events, self.folder)
        pos = view.position
        proc = MatchProcessor(state, self.folder, self.config.gap_timeout,
                              epoch=pos.epoch if pos else next_epoch(None, _now_ms()))
        if state.seq > 0 and (pos is None or pos.seq < state.seq):
            await self._reseed(proc, pos)
        # Notifications a crash may have kept off Kafka: the relay skips what it committed.
        self.relay.publish(match_id, self._partition(match_id), note_records(all_notes(state)))
        if state.doc is not None:  # the card a crash may have kept off the scorecards topic
            self.cards.update(match_id, state.seq, orjson.dumps(state.doc))
        return proc

    async def _load(self, match_id: str, once: bool = False) -> list[StoredEvent]:
        """The stored log; retried until the store answers (or ``[]`` after one try if
        ``once``): a worker that cannot read a match's past cannot fold its future."""
        delay = 0.1
        while True:
            try:
                return await self.store.load(match_id)
            except EventStoreError as exc:
                if once:
                    return []
                log.warning("event store unreachable during recovery, retrying",
                            extra={"match_id": match_id, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _after_move(self, match_id: str, rest: Sequence[Outcome]) -> None:
        """Another worker advanced the view: wait for our store writes, reload, offer again."""
        log.warning("view moved under this worker; recovering", extra={"match_id": match_id})
        await self.backlog.drain()
        self.matches.pop(match_id, None)
        for o in rest:
            if isinstance(o, Accepted | Duplicate):
                await self.handle(o.raw, o.token)
            else:
                await self._run([o])


class ViewMovedError(RuntimeError):
    def __init__(self, match_id: str, stored: Position | None) -> None:
        super().__init__(f"view of {match_id} moved to {stored}")
        self.match_id = match_id


def _stored(event: Any, raw: bytes) -> StoredEvent:
    return StoredEvent(event.match_id, event.seq, event.event_id, event.payload.TYPE, event.ts,
                       codec.encode(event))


def _acker(token: Any) -> Callable[[], Any] | None:
    return token if callable(token) else None


async def _call(fn: Callable[[], Any] | None) -> None:
    if fn is not None:
        result = fn()
        if isinstance(result, Awaitable):
            await result


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ts_of(state: MatchState) -> str:
    return state.ts or "1970-01-01T00:00:00.000Z"
