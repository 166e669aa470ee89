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

State belongs to the partition assignment (principle 13): ``revoke(partitions)`` drops the
matches of those partitions, their cards and held acks, and their relay transactions;
``assign(partitions)`` drops whatever was held for them before, and each match is recovered
from the event store and the Redis view position on first sight. Every event is handled under
its partition's generation (``streams.ownership``): an effect or an ack of an event whose
partition was revoked meanwhile is abandoned, never carried out late.

Errors follow ``streams.errors``: a dependency that is down pauses the match and retries the
same step; a bug on one event dead-letters it (``internal_error``, with its traceback) and puts
the match back to its last good position; a gap is held and, once ``gap_timeout`` has passed,
filled from the event store if a previous owner stored the missing events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from runtime.eventloop import raise_if_cancelled
from runtime.scorers import RegistryFile
from schemas.deadletter import Reason
from schemas.events import Event
from schemas.signing import Registry
from streams.cards import CardPublisher
from streams.commits import ViewMovedError, commit, dlq_record, now_ms, reseed
from streams.commits import note_records as note_records  # the engine's public helpers
from streams.commits import view_write as view_write
from streams.errors import Backoff, Unavailable
from streams.eventstore import EventStore, StoreBacklog
from streams.metrics import Metrics
from streams.ownership import Ownership
from streams.pipeline import (
    MAX_HELD,
    Accepted,
    Dropped,
    Duplicate,
    Failed,
    Folder,
    MatchProcessor,
    MatchState,
    Outcome,
    Rejected,
    all_notes,
    classify,
    reject,
)
from streams.recovery import as_stored, describe, read_match, stored_events
from streams.relay import NoteRelay
from streams.viewstore import ViewStore, next_epoch

log = logging.getLogger(__name__)

Ack = Callable[[], Any] | None


class Outputs(Protocol):
    async def scorecard(self, match_id: str, card: bytes) -> None: ...

    async def dead_letter(self, key: bytes | None, value: bytes) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    allowed_sources: Sequence[str]
    gap_timeout: float
    # events must be signed by one of these (None: unchecked); a RegistryFile is re-read
    # when the file changes (runtime.scorers)
    scorers: Registry | RegistryFile | None = None
    max_held: int = MAX_HELD  # events held per match behind a gap


class _Stored:
    """The token of an event read back from the event store to fill a gap: already stored,
    nothing to acknowledge."""

    def __repr__(self) -> str:
        return "STORED"


STORED = _Stored()


class Abandoned(Exception):
    """The event's partition was revoked (or the match's state replaced) while it was under
    way: stop here, carry out nothing more and acknowledge nothing (the owner re-reads it)."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """The partition an event came from and the generation of its assignment then."""

    partition: int
    generation: int


class Engine:
    def __init__(self, folder: Folder, views: ViewStore, store: EventStore,
                 backlog: StoreBacklog, outputs: Outputs, config: EngineConfig,
                 relay: NoteRelay, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 partitions: Iterable[int] | None = None,
                 reread: Callable[[int], Any] | None = None) -> None:
        """``partitions``: ``None`` for a standalone engine (tests, benches), which takes a
        partition on first sight; the faust worker passes ``()`` and calls ``assign``.
        ``reread(p)`` has the consumer re-read partition p from its oldest unacknowledged
        message (events let go behind a long gap)."""
        self.folder, self.views, self.store, self.backlog = folder, views, store, backlog
        self.outputs, self.config, self.clock, self.relay = outputs, config, clock, relay
        self.metrics = metrics or Metrics()
        self.owner = Ownership(partitions)
        self.reread = reread
        self.matches: dict[str, MatchProcessor] = {}
        self.partitions: dict[str, int] = {}  # match -> its match.events partition
        self.cards = CardPublisher(outputs.scorecard)
        self._locks: dict[str, asyncio.Lock] = {}  # one event (or gap fill) of a match at a time

    # -- entry points -----------------------------------------------------------------------

    async def handle(self, raw: bytes, ack: Ack = None, partition: int = 0) -> None:
        """One message, start to end (the lanes of ``streams.lanes`` run matches side by side).
        ``partition`` is the message's partition of ``match.events``: the relay's fencing
        scope for the match's notifications."""
        event = await self.admit(raw, ack, partition)
        if event is not None:
            await self.handle_event(event, raw, ack, partition)

    async def admit(self, raw: bytes, ack: Ack = None, partition: int = 0) -> Event | None:
        """Validate and authorise; a reject goes to the DLQ here and ``None`` is returned."""
        scorers = self.config.scorers
        if isinstance(scorers, RegistryFile):
            scorers = scorers.current()
        first = classify(raw, ack, self.config.allowed_sources, scorers)
        if isinstance(first, Rejected):
            self.metrics.events_in.labels("?").inc()
            t = self._ticket(partition)
            if t is not None:
                await self._safe_reject(t, first)
            return None
        self.metrics.events_in.labels(first.payload.TYPE).inc()
        return first

    async def handle_event(self, event: Event, raw: bytes, ack: Ack = None,
                           partition: int = 0) -> None:
        t = self._ticket(partition)
        if t is None:
            return  # not this worker's partition (revoked): its owner reads it
        async with self._lock(event.match_id):
            await self._handle(t, event, raw, ack)

    async def tick(self) -> None:
        """Look in the event store for the missing events of gaps open for ``gap_timeout``
        (call about once a second; never raises)."""
        now = self.clock()
        for m, proc in list(self.matches.items()):
            if not proc.gap_due(now):
                continue
            try:
                await self._fill_gap(m, proc)
            except Unavailable as exc:
                log.warning("gap fill: event store unavailable, trying again later",
                            extra={"match_id": m, "error": str(exc)})
            except Exception:
                log.exception("gap fill failed", extra={"match_id": m})
        self.metrics.held.set(sum(len(p.held) for p in self.matches.values()))

    async def audit(self) -> int:
        """Re-seed views that vanished or went back (Redis flushed or restarted from an old
        snapshot) for matches this worker holds, even if no new event arrives. Call every few
        seconds; returns how many views were re-seeded. Never raises: with Redis down it
        returns and the next call tries again."""
        fixed = 0
        for m, proc in list(self.matches.items()):
            if proc.state.seq == 0:
                continue
            try:
                async with self._lock(m):
                    if self.matches.get(m) is not proc:
                        continue
                    pos = (await self.views.read(m)).position
                    if pos is None or pos.seq < proc.state.seq:
                        await reseed(self.views, proc, pos)
                        fixed += 1
            except Unavailable as exc:
                log.warning("audit: redis unavailable, trying again later",
                            extra={"error": str(exc)})
                break
            except Exception:
                log.exception("audit failed", extra={"match_id": m})
        return fixed

    async def revoke(self, partitions: Iterable[int]) -> None:
        """The group took ``partitions`` away: stop their events (their generation ends),
        drop their matches' state, cards and held acks, and finish or abort their relay
        transactions. Nothing of theirs is acknowledged from now on."""
        await self._let_go(set(partitions))

    async def assign(self, partitions: Iterable[int]) -> None:
        """The group gave ``partitions``: whatever this process held for them before is
        dropped; each match is recovered from the event store and the Redis view position on
        first sight, under a new generation. Everything but the wait for the old relay
        transactions happens before the first ``await``: a message of the new assignment
        never finds the partition unowned."""
        ps = set(partitions)
        closing = self._let_go(ps)
        self.owner.assign(ps)
        if ps:
            log.info("partitions assigned", extra={"partitions": sorted(ps)})
        await closing

    def _let_go(self, ps: set[int]) -> Awaitable[Any]:
        """Drop what is held for ``ps`` now; the result completes once their relay
        transactions are finished or aborted."""
        self.owner.revoke(ps)
        gone = [m for m, p in self.partitions.items() if p in ps]
        for m in gone:
            self.matches.pop(m, None)
            self.partitions.pop(m, None)
        self.cards.forget(gone)
        self.metrics.held.set(sum(len(p.held) for p in self.matches.values()))
        if gone:
            log.info("partitions let go", extra={"partitions": sorted(ps), "matches": len(gone)})
        return self.relay.revoke(ps)

    # -- one event --------------------------------------------------------------------------

    def _ticket(self, partition: int) -> Ticket | None:
        gen = self.owner.generation(partition)
        return None if gen is None else Ticket(partition, gen)

    def _lock(self, match_id: str) -> asyncio.Lock:
        lock = self._locks.get(match_id)
        if lock is None:
            lock = self._locks[match_id] = asyncio.Lock()
        return lock

    def _alive(self, t: Ticket) -> bool:
        return self.owner.current(t.partition, t.generation)

    def _check(self, t: Ticket, proc: MatchProcessor | None = None) -> None:
        """Raise ``Abandoned`` unless the partition is still held under ``t`` (and ``proc``
        still is its match's state)."""
        if not self._alive(t) or (
                proc is not None and self.matches.get(proc.state.match_id) is not proc):
            raise Abandoned()

    async def _handle(self, t: Ticket, event: Event, raw: bytes, ack: Ack) -> None:
        m = event.match_id
        proc = self.matches.get(m)
        if proc is None:
            try:
                proc = await self._retrying(t, None, lambda: self._recover(t, event))
            except Abandoned:
                return
            except Exception as exc:  # a bug while recovering, on this event
                await self._run(t, None, [Failed(event, raw, ack, exc)], None)
                return
            if proc is None:
                detail = "no match.created seen for this match"
                await self._safe_reject(t, reject(event, raw, ack, Reason.UNKNOWN_MATCH, detail))
                return
            self.matches[m], self.partitions[m] = proc, t.partition
        good = proc.state
        started = time.perf_counter()
        outcomes = proc.offer(event, raw, ack, self.clock())
        self.metrics.fold_seconds.observe(time.perf_counter() - started)
        await self._run(t, proc, outcomes, good)
        if proc.reread_needed():
            self._reread(t.partition)

    async def _retrying(self, t: Ticket, proc: MatchProcessor | None,
                        step: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``step`` until it does not raise ``Unavailable`` (a dependency is down: the
        match pauses, nothing is acked or dead-lettered meanwhile), or until the partition is
        revoked (``Abandoned``). Any other exception goes to the caller."""
        backoff, told = Backoff(), False
        while True:
            raise_if_cancelled()  # a stop's cancel lost in the failed call (runtime.eventloop)
            self._check(t, proc)
            try:
                return await step()
            except Unavailable as exc:
                self.metrics.unavailable.labels(type(exc).__name__).inc()
                level = logging.DEBUG if told else logging.WARNING
                log.log(level, "dependency unavailable, retrying",
                        extra={"error": str(exc), "partition": t.partition})
                told = True
                await asyncio.sleep(backoff.next())

    # -- outcomes ---------------------------------------------------------------------------

    async def _run(self, t: Ticket, proc: MatchProcessor | None, outcomes: Sequence[Outcome],
                   good: MatchState | None) -> None:
        """Carry out ``outcomes`` in order. ``good`` is the match's last good state: the one
        it goes back to if an effect fails on a bug."""
        for i, o in enumerate(outcomes):
            try:
                await self._retrying(t, proc, lambda o=o: self._outcome(t, proc, o))  # type: ignore[misc]
            except Abandoned:
                return
            except ViewMovedError as exc:
                await self._after_move(t, exc.match_id, outcomes[i:])
                return
            except Exception as exc:  # a bug on this outcome's event
                await self._failed(t, proc, outcomes, i, exc, good)
                return
            if isinstance(o, Accepted) and o.state is not None:
                good = o.state

    async def _outcome(self, t: Ticket, proc: MatchProcessor | None, o: Outcome) -> None:
        if isinstance(o, Accepted):
            assert proc is not None
            await self._accepted(t, proc, o)
        elif isinstance(o, Duplicate):
            self.metrics.duplicates.inc()
            if o.token is not STORED:
                e, ack = o.event, self._gated(t, o.event, _acker(o.token))
                await self.backlog.put(as_stored(e), ack, if_absent=True)
        elif isinstance(o, Rejected):
            await self._reject(o)
        elif isinstance(o, Failed):
            await self._bug(t, o.event, o.raw, o.token, o.error)
        elif isinstance(o, Dropped):  # not kept, not acked: re-read once the gap fills
            self.metrics.dropped.inc()
            log.error("event beyond a full gap let go (re-read once the gap fills)",
                      extra={"match_id": o.event.match_id, "seq": o.event.seq})

    async def _reject(self, o: Rejected) -> None:
        if o.reason is Reason.CONFLICT:  # two events claim one seq: a producer bug
            log.error("sequence conflict: event dead-lettered",
                      extra={"match_id": o.match_id, "seq": o.seq, "detail": o.detail})
        key = o.match_id.encode() if o.match_id else None
        await self.outputs.dead_letter(key, dlq_record(o))  # OutputError: retried
        self.metrics.rejects.labels(o.reason.value).inc()
        await _call(_acker(o.token))

    async def _safe_reject(self, t: Ticket, o: Rejected) -> None:
        """Dead-letter ``o``, retrying while Kafka is down; if the write fails otherwise the
        event stays unacknowledged (re-read after a restart or a rebalance), never lost."""
        try:
            await self._retrying(t, None, lambda: self._reject(o))
        except Abandoned:
            pass
        except Exception:
            log.exception("dead-letter write failed: the event stays unacknowledged",
                          extra={"match_id": o.match_id, "seq": o.seq, "reason": o.reason.value})

    async def _bug(self, t: Ticket, event: Event, raw: bytes, token: Any,
                   exc: BaseException) -> None:
        log.error("event failed on a bug: dead-lettered as internal_error", exc_info=exc,
                  extra={"match_id": event.match_id, "seq": event.seq})
        await self._safe_reject(t, reject(event, raw, token, Reason.INTERNAL, describe(exc)))

    async def _failed(self, t: Ticket, proc: MatchProcessor | None, outcomes: Sequence[Outcome],
                      i: int, exc: BaseException, good: MatchState | None) -> None:
        """Outcome ``i`` raised a bug: dead-letter its event and put the match back to
        ``good``; the events folded after it wait again behind the gap it leaves."""
        o, rest = outcomes[i], outcomes[i + 1:]
        if isinstance(o, Rejected):
            log.error("dead-letter write failed: the event stays unacknowledged", exc_info=exc,
                      extra={"match_id": o.match_id, "seq": o.seq})
        elif isinstance(o, Accepted | Duplicate | Failed):
            if proc is not None and good is not None and isinstance(o, Accepted):
                rehold = [(x.event, x.raw, x.token) for x in rest if isinstance(x, Accepted)]
                proc.restore(good, rehold, self.clock())
                rest = [x for x in rest if not isinstance(x, Accepted)]
            await self._bug(t, o.event, o.raw, o.token, exc)
        for x in rest:
            if isinstance(x, Rejected):
                await self._safe_reject(t, x)

    async def _accepted(self, t: Ticket, proc: MatchProcessor, o: Accepted) -> None:
        e = o.event
        await self.relay.room()  # bounded: Kafka refusing transactions pauses consumption
        await self.cards.room()
        records = note_records(o.notes)
        card = await commit(self.views, self.metrics, proc, o, records)
        self._check(t, proc)  # revoked while committing: the new owner carries on
        if records:
            self.relay.publish(e.match_id, t.partition, records)
            for n in o.notes:
                self.metrics.notifications.labels(n.kind.value).inc()
        self.cards.update(e.match_id, e.seq, card or orjson.dumps(o.after))
        self.metrics.events_out.labels(e.payload.TYPE).inc()
        if o.token is STORED:
            return
        ack = self._gated(t, e, _acker(o.token))
        await self.backlog.put(as_stored(e),
                               self._guard(t, lambda: self.cards.gate(e.match_id, e.seq, ack)))
        self.metrics.backlog.set(len(self.backlog))
        self.metrics.store_up.set(1 if self.backlog.healthy else 0)

    def _guard(self, t: Ticket, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` if the partition is still held under ``t`` when it runs, else nothing."""
        return lambda: fn() if self._alive(t) else None

    def _gated(self, t: Ticket, e: Event, ack: Callable[[], Any] | None
               ) -> Callable[[], Any] | None:
        """``ack`` held until the notifications caused at or before ``e`` are published."""
        if ack is None:
            return None
        return self._guard(t, lambda: self.relay.gate(e.match_id, t.partition, e.seq, ack))

    # -- recovery ---------------------------------------------------------------------------

    async def _recover(self, t: Ticket, event: Event) -> MatchProcessor | None:
        """The match's state from the event store, its view position from Redis."""
        m = event.match_id
        found = await read_match(m, event, self.views, self.store, self.folder)
        if found is None:
            return None
        state, pos = found.state, found.position
        proc = MatchProcessor(state, self.folder, self.config.gap_timeout,
                              epoch=pos.epoch if pos else next_epoch(None, now_ms()),
                              max_held=self.config.max_held)
        self._check(t)
        if state.seq > 0 and (pos is None or pos.seq < state.seq):
            await reseed(self.views, proc, pos)
            self._check(t)
        # Notifications a crash may have kept off Kafka: the relay skips what it committed.
        self.relay.publish(m, t.partition, note_records(all_notes(state)))
        if state.doc is not None:  # the card a crash may have kept off the scorecards topic
            self.cards.update(m, state.seq, orjson.dumps(state.doc))
        return proc

    async def _after_move(self, t: Ticket, match_id: str, rest: Sequence[Outcome]) -> None:
        """Another worker advanced the view: wait for our store writes, reload, offer again
        (under the same partition and generation: the relay must not publish elsewhere)."""
        log.warning("view moved under this worker; recovering", extra={"match_id": match_id})
        await self.backlog.drain()
        if not self._alive(t):
            return
        self.matches.pop(match_id, None)
        for o in rest:
            if isinstance(o, Accepted | Duplicate | Failed):
                await self._handle(t, o.event, o.raw, o.token)
            elif isinstance(o, Rejected):
                await self._safe_reject(t, o)

    async def _fill_gap(self, match_id: str, proc: MatchProcessor) -> None:
        """Offer the missing events of a held gap from the event store (stored by a previous
        owner, say); what it lacks keeps waiting for the producer."""
        partition = self.partitions.get(match_id)
        t = None if partition is None else self._ticket(partition)
        if t is None:
            return
        async with self._lock(match_id):
            gap = proc.missing()
            if self.matches.get(match_id) is not proc or gap is None:
                return
            rows = await self.store.load(match_id, after=proc.state.seq)
            found = stored_events(rows, *gap)
            if self.matches.get(match_id) is not proc:
                return
            if not found or found[0][0].seq != gap[0]:
                log.warning("sequence gap: the missing events are not in the event store; "
                            "waiting for the producer to send them",
                            extra={"match_id": match_id, "first": gap[0], "last": gap[1],
                                   "held": len(proc.held)})
                return
            log.warning("sequence gap filled from the event store",
                        extra={"match_id": match_id, "first": gap[0], "found": len(found)})
            good, outcomes = proc.state, []
            for event, body in found:
                outcomes += proc.offer(event, body, STORED, self.clock())
            await self._run(t, proc, outcomes, good)
            if proc.reread_needed():
                self._reread(t.partition)

    def _reread(self, partition: int) -> None:
        if self.reread is None:
            log.error("events let go behind a gap need a re-read, which this engine cannot "
                      "do: they come back after a restart", extra={"partition": partition})
            return
        log.warning("re-reading the partition from its oldest unacknowledged message",
                    extra={"partition": partition})
        self.reread(partition)


def _acker(token: Any) -> Callable[[], Any] | None:
    return token if callable(token) else None


async def _call(fn: Callable[[], Any] | None) -> None:
    if fn is not None:
        result = fn()
        if isinstance(result, Awaitable):
            await result
