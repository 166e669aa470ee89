"""The engine when partitions move, dependencies go down and bugs happen: in-memory stores.

Each test says what the code before #14 did. The real-stack versions are
``test_pipeline_moves.py`` (three workers, partitions moving) and ``test_pipeline_outages.py``
(Redis, Cassandra, Kafka stopped during a replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from schemas import codec
from schemas.events import Event
from streams.engine import Engine, EngineConfig
from streams.errors import OutputError, Policy, policy
from streams.eventstore import EventStoreError, InMemoryEventStore, StoreBacklog
from streams.lanes import Lanes
from streams.pipeline import ScorecardFolder, all_notes, replay_state
from streams.relay import InMemoryTxnLog, NoteRelay
from streams.viewstore import InMemoryViewStore, ViewStoreError
from tests.streams.test_pipeline_engine import Sink, match_events


class FlakyViews(InMemoryViewStore):
    """Redis that can be down (every call fails) or hold commits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.hold: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    async def _run(self, mode: str, w: Any) -> Any:
        if self.down:
            raise ViewStoreError("redis down")
        if self.hold is not None:
            self.waiting.set()
            await self.hold.wait()
        return await super()._run(mode, w)

    async def read(self, match_id: str) -> Any:
        if self.down:
            raise ViewStoreError("redis down")
        return await super().read(match_id)


@dataclasses.dataclass
class Worker:
    """One engine (a worker) on stores and topics it may share with others."""

    engine: Engine
    views: FlakyViews
    store: InMemoryEventStore
    sink: Sink
    task: asyncio.Task[None]
    acked: list[int]

    def ack(self, seq: int) -> Any:
        return functools.partial(self.acked.append, seq)

    async def feed(self, events: list[Event], partition: int = 0) -> None:
        for e in events:
            await self.engine.handle(codec.encode(e), ack=self.ack(e.seq), partition=partition)
        await self.settle()

    async def settle(self) -> None:
        await self.engine.backlog.drain()
        await self.engine.relay.drained()
        await self.engine.cards.flush()
        await self.engine.backlog.drain()


def worker(views: FlakyViews | None = None, store: InMemoryEventStore | None = None,
           sink: Sink | None = None, partitions: Any = None, folder: Any = None,
           relay_kwargs: dict[str, Any] | None = None, **config: Any) -> Worker:
    views, store, sink = views or FlakyViews(), store or InMemoryEventStore(), sink or Sink()
    backlog = StoreBacklog(store, maxsize=1000, retry_max=0.01)
    relay = NoteRelay(lambda p: InMemoryTxnLog(sink.kafka, p), retry_max=0.01,
                      reopen_pause=0.01, **(relay_kwargs or {}))
    cfg = EngineConfig(("cricsheet",), gap_timeout=config.pop("gap_timeout", 0.05), **config)
    engine = Engine(folder or ScorecardFolder(), views, store, backlog, sink, cfg, relay,
                    partitions=partitions)
    return Worker(engine, views, store, sink, asyncio.create_task(backlog.run()), [])


@pytest.fixture
async def w() -> AsyncIterator[Worker]:
    one = worker()
    yield one
    one.task.cancel()
    await one.engine.relay.close()


def truth(events: list[Event]) -> tuple[dict[str, Any], list[str]]:
    state = replay_state(events[0].match_id, events, ScorecardFolder())
    return state.doc or {}, [n.id for n in all_notes(state)]


async def assert_final(w: Worker, events: list[Event]) -> None:
    doc, note_ids = truth(events)
    view = await w.views.read(events[0].match_id)
    assert view.position is not None and view.position.seq == len(events)
    assert orjson.loads(view.card or b"null") == doc
    assert sorted(w.store.rows[events[0].match_id]) == [e.seq for e in events]
    sent = [n.id for n in w.sink.notes]
    assert sent == note_ids, "every notification exactly once, in order"


# -- revoke and assign ------------------------------------------------------------------------


async def test_revoke_drops_state_held_acks_and_the_relay_partition() -> None:
    """Old code: no revoke; the state and held acks stayed until the relay's next commit."""
    w = worker(partitions=(), relay_kwargs={"min_interval": 60.0})  # notes wait: acks held
    await w.engine.assign([3])
    ev = match_events()
    for e in ev[:60]:
        await w.engine.handle(codec.encode(e), ack=w.ack(e.seq), partition=3)
    await w.engine.backlog.drain()
    assert "m1" in w.engine.matches and w.engine.relay.held() > 0
    held_back = [e.seq for e in ev[:60] if e.seq not in w.acked]
    assert held_back  # waiting for the relay's next transaction
    await w.engine.revoke([3])
    assert w.engine.matches == {} and w.engine.relay.held() == 0
    assert w.engine.cards.held() == 0 and await w.engine.cards.flush() == 0
    await w.engine.handle(codec.encode(ev[60]), ack=w.ack(61), partition=3)  # not ours now
    await w.settle()
    assert not set(held_back + [61]) & set(w.acked)  # never acked: the new owner re-reads
    assert (await w.views.read("m1")).position.seq == 60  # type: ignore[union-attr]
    w.task.cancel()


async def test_assign_recovers_the_match_whatever_was_held_before() -> None:
    """The reported run: a worker kept its state (seq 63) for a partition that moved away and
    came back, and treated every later event as a gap (dead-lettered as sequence_gap)."""
    a = worker(partitions=())
    b = worker(a.views, a.store, a.sink, partitions=())
    ev = match_events()
    await a.engine.assign([0])
    await a.feed(ev[:63])
    await b.engine.assign([0])  # the partition moved (A missed the revoke: say it hung)
    await b.feed(ev[:120])
    await a.engine.assign([0])  # ... and came back
    await a.feed(ev[120:])
    await assert_final(a, ev)
    assert a.sink.dlq == [] and not a.engine.matches["m1"].held
    for one in (a, b):
        one.task.cancel()


async def test_an_event_under_way_when_its_partition_is_revoked_is_abandoned() -> None:
    """Its view commit may land (the new owner's commit of the same event is then a no-op),
    but nothing after it: no notifications published (the relay would open the partition's
    transactional id and fence the new owner), no card, no ack."""
    w = worker(partitions=())
    await w.engine.assign([3])
    ev = match_events()
    await w.feed(ev[:5], partition=3)
    owners = dict(w.sink.kafka.get("owners", {}))
    w.views.hold = asyncio.Event()
    task = asyncio.create_task(w.engine.handle(codec.encode(ev[5]), ack=w.ack(6), partition=3))
    await w.views.waiting.wait()
    await w.engine.revoke([3])
    w.views.hold.set()
    await task
    await w.settle()
    assert 6 not in w.acked and "m1" not in w.engine.matches
    assert w.sink.kafka.get("owners", {}) == owners and await w.engine.cards.flush() == 0
    w.task.cancel()


async def test_a_view_moved_by_another_worker_keeps_the_events_partition() -> None:
    """Old code: ``_after_move`` handled the events again as partition 0, so the relay opened
    partition 0's transactional id and published the match's notifications there again."""
    a = worker(partitions=())
    b = worker(a.views, a.store, a.sink, partitions=())
    ev = match_events()
    await a.engine.assign([5])
    await a.feed(ev[:20], partition=5)
    await b.engine.assign([5])
    await b.feed(ev[:60], partition=5)  # B moved the view on; A does not know yet
    await a.feed(ev[20:70], partition=5)  # A's commit conflicts: it recovers, carries on
    await b.feed(ev[60:], partition=5)
    assert 0 not in a.sink.kafka["owners"]
    doc, note_ids = truth(ev)
    assert [n.id for n in a.sink.notes] == note_ids  # none twice
    assert orjson.loads((await a.views.read("m1")).card or b"null") == doc
    for one in (a, b):
        one.task.cancel()


# -- error classification ---------------------------------------------------------------------


def test_each_error_has_a_policy() -> None:
    assert policy(ViewStoreError("redis")) is Policy.RETRY
    assert policy(EventStoreError("cassandra")) is Policy.RETRY
    assert policy(OutputError("kafka")) is Policy.RETRY
    for bug in (KeyError("x"), ValueError("y"), AssertionError()):
        assert policy(bug) is Policy.DEAD_LETTER


async def test_redis_down_pauses_the_match_and_loses_nothing(w: Worker) -> None:
    """Old code: the lane retried by offering the event again, which the processor (already
    past it) took for a duplicate: acked, its view commit and notifications never done."""
    lanes = Lanes(w.engine)
    ev = match_events()
    await w.feed(ev[:20])
    w.views.down = True
    for e in ev[20:80]:
        await lanes.submit(codec.encode(e), ack=w.ack(e.seq))
    await asyncio.sleep(0.3)
    assert w.acked == [e.seq for e in ev[:20]] and w.sink.dlq == []
    assert w.engine.metrics.registry.get_sample_value(
        "stumpcast_streams_unavailable_total", {"error": "ViewStoreError"})
    w.views.down = False
    await lanes.idle()
    await w.settle()
    await assert_final(w, ev[:80])
    assert sorted(w.acked) == [e.seq for e in ev[:80]] and w.sink.dlq == []


async def test_kafka_down_a_dead_letter_waits_unacked(w: Worker) -> None:
    ev = match_events()
    await w.feed(ev[:5])
    real, calls = w.sink.dead_letter, []

    async def down(key: bytes | None, value: bytes) -> None:
        calls.append(1)
        raise OutputError("kafka down")

    w.sink.dead_letter = down  # type: ignore[method-assign]
    impostor = dataclasses.replace(ev[2], event_id="impostor")  # a conflict: dead-lettered
    task = asyncio.create_task(w.engine.handle(codec.encode(impostor), ack=w.ack(-3)))
    await asyncio.sleep(0.2)
    assert len(calls) > 1 and -3 not in w.acked and not task.done()
    w.sink.dead_letter = real  # type: ignore[method-assign]
    await task
    assert [d["reason"] for d in w.sink.dlq] == ["conflict"] and -3 in w.acked


class BuggyFolder(ScorecardFolder):
    """A fold whose document raises once at one seq (a bug on that event, then "fixed")."""

    def __init__(self, seq: int) -> None:
        self.seq, self.armed = seq, True

    def doc(self, card: Any) -> dict[str, Any]:
        if self.armed and card.seq == self.seq:
            self.armed = False
            raise RuntimeError("boom in the scorecard")
        return super().doc(card)


async def test_a_bug_dead_letters_the_event_with_its_traceback() -> None:
    """Old code: any exception in the fold became ``fold_rejected`` (the event's fault); the
    later events of the match then went to the DLQ as ``sequence_gap``."""
    w = worker(folder=BuggyFolder(5))
    ev = match_events()
    await w.feed(ev[:12])
    await asyncio.sleep(0.06)
    await w.engine.tick()
    [dead] = w.sink.dlq
    assert (dead["reason"], dead["seq"]) == ("internal_error", 5)
    assert "Traceback" in dead["detail"] and "boom in the scorecard" in dead["detail"]
    assert (await w.views.read("m1")).position.seq == 4  # type: ignore[union-attr]
    assert sorted(w.acked) == [1, 2, 3, 4, 5]  # 5 is in the DLQ; 6..12 wait for it
    await w.feed(ev[4:])  # seq 5 sent again (e.g. from the DLQ, after the fix), and the rest
    await assert_final(w, ev)
    assert len(w.sink.dlq) == 1
    w.task.cancel()


async def test_a_bug_in_an_effect_puts_the_match_back_to_its_last_good_position() -> None:
    """Old code: the lane dropped the match's state and recovered it from the event store
    without waiting for its own store backlog, so (in memory) the rest of the match went to
    the DLQ as ``unknown_match``."""
    w = worker()
    lanes = Lanes(w.engine)
    ev = match_events()
    real, armed = w.engine.cards.update, [True]

    def update(match_id: str, seq: int, card: bytes) -> None:
        if seq == 7 and armed:
            armed.clear()
            raise RuntimeError("boom after the view commit")
        real(match_id, seq, card)

    w.engine.cards.update = update  # type: ignore[method-assign]
    for e in ev[:30]:
        await lanes.submit(codec.encode(e), ack=w.ack(e.seq))
    await lanes.idle()
    await w.settle()
    assert [(d["reason"], d["seq"]) for d in w.sink.dlq] == [("internal_error", 7)]
    assert w.engine.matches["m1"].state.seq == 6 and min(w.engine.matches["m1"].held) == 8
    for e in ev[6:]:
        await lanes.submit(codec.encode(e), ack=w.ack(e.seq))
    await lanes.idle()
    await w.settle()
    await assert_final(w, ev)
    assert len(w.sink.dlq) == 1
    w.task.cancel()


async def test_a_failing_dead_letter_write_keeps_the_lane_and_its_slots(w: Worker) -> None:
    """Old code: the failure escaped the lane's task; the lane stayed registered with nobody
    draining it, so the match's later events never ran and their slots leaked."""
    lanes = Lanes(w.engine, max_in_flight=50)
    ev = match_events()

    async def broken(key: bytes | None, value: bytes) -> None:
        raise ValueError("the dead-letter record cannot be sent")  # not retriable

    w.sink.dead_letter = broken  # type: ignore[method-assign]
    impostor = dataclasses.replace(ev[3], event_id="impostor")
    for e in [*ev[:6], impostor, *ev[6:100]]:
        await lanes.submit(codec.encode(e), ack=w.ack(-4 if e is impostor else e.seq))
    await lanes.idle()
    await w.settle()
    await assert_final(w, ev[:100])
    assert -4 not in w.acked  # neither dead-lettered nor acked: re-read after a restart
    assert lanes._slots._value == 50  # every slot back


# -- guarded timers, bounded memory -----------------------------------------------------------


async def test_the_audit_survives_a_redis_outage(w: Worker) -> None:
    """Old code: the audit raised the Redis error, which ended faust's timer for good."""
    ev = match_events()
    await w.feed(ev[:30])
    w.views.down = True
    assert await w.engine.audit() == 0
    w.views.down = False
    w.views.flush()
    assert await w.engine.audit() == 1


async def test_a_card_that_cannot_be_sent_is_kept_for_the_next_flush() -> None:
    """Old code: the flush swapped its dirty cards out before sending, so one failed send lost
    every changed card of that flush and the acks waiting for them."""
    from streams.cards import CardPublisher

    sent: list[tuple[str, bytes]] = []
    failing = {"a"}

    async def send(m: str, card: bytes) -> None:
        if m in failing:
            raise OutputError("kafka down")
        sent.append((m, card))

    cards, acked = CardPublisher(send), list[str]()
    for m in ("a", "b"):
        cards.update(m, 1, m.encode())
        cards.gate(m, 1, functools.partial(acked.append, m))
    assert await cards.flush() == 1 and sent == [("b", b"b")] and acked == ["b"]
    failing.clear()
    assert await cards.flush() == 1 and sent[-1] == ("a", b"a") and acked == ["b", "a"]


async def test_consumption_pauses_while_the_relay_is_full() -> None:
    """Old code: while Kafka refused transactions the held acks and notes grew without end."""
    w = worker(relay_kwargs={"max_held": 8})
    w.sink.kafka["fail_commits"] = 10**9
    lanes = Lanes(w.engine, max_in_flight=20)
    ev = match_events()
    feeding = asyncio.create_task(_submit_all(lanes, w, ev[:200]))
    await asyncio.sleep(0.3)
    assert not feeding.done()  # the lanes wait for room, the slots run out, submit waits
    assert w.engine.relay.held() <= 8 + 10  # the bound, plus one event's notes at most
    w.sink.kafka["fail_commits"] = 0
    await feeding
    await lanes.idle()
    await w.settle()
    await assert_final(w, ev[:200])
    w.task.cancel()


async def _submit_all(lanes: Lanes, w: Worker, events: list[Event]) -> None:
    for e in events:
        await lanes.submit(codec.encode(e), ack=w.ack(e.seq))


async def test_a_timer_job_that_fails_is_logged_and_runs_again(
        caplog: pytest.LogCaptureFixture) -> None:
    from streams.app import _guarded

    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ViewStoreError("redis down")
        if len(runs) == 2:
            raise KeyError("a bug")

    for _ in range(3):
        await _guarded("audit", job)
    assert len(runs) == 3
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("audit")] == \
        ["WARNING", "ERROR"]


async def test_events_let_go_behind_a_full_gap_are_read_again() -> None:
    w = worker(max_held=2)
    reread: list[int] = []
    w.engine.reread = reread.append
    ev = match_events()
    await w.feed([ev[0], ev[2], ev[3], ev[4]], partition=6)  # seq 5 is let go, unacked
    assert reread == [] and 5 not in w.acked
    await w.feed([ev[1]], partition=6)
    assert reread == [6]  # the consumer seeks back to the oldest unacknowledged message
    await w.feed(ev[4:], partition=6)  # what the re-read brings
    await assert_final(w, ev)
    w.task.cancel()


async def test_a_scorer_revoked_while_the_worker_runs_is_refused(tmp_path: Any) -> None:
    """The worker re-reads the registry file (runtime.scorers): before, it loaded it once at
    start, so a revoked scorer's events were accepted until a restart."""
    from runtime.scorers import RegistryFile
    from schemas.signing import Registry, Scorer, Signer, generate_key

    pem, public = generate_key()
    path = tmp_path / "scorers.json"
    path.write_bytes(Registry({"feed": Scorer("feed", public, ("cricsheet",))}).encode())
    registry = RegistryFile(path, interval=0.0)
    w = worker(scorers=registry)
    ev, signer = match_events(), Signer("feed", pem)
    for e in ev[:3]:
        await w.engine.handle(signer.sign(codec.encode(e)), ack=w.ack(e.seq), partition=0)
    await w.settle()
    assert w.acked == [e.seq for e in ev[:3]] and not w.sink.dlq
    tmp = tmp_path / "next.json"
    tmp.write_bytes(Registry().encode())  # feed revoked (a new file, as `scorers` writes it)
    tmp.replace(path)
    await w.engine.handle(signer.sign(codec.encode(ev[3])), ack=w.ack(ev[3].seq), partition=0)
    await w.settle()
    assert [d["reason"] for d in w.sink.dlq] == ["bad_signature"]
    assert ev[3].seq not in {row.seq for row in await w.store.load(ev[3].match_id)}
    w.task.cancel()


async def test_a_gap_fill_trusts_the_store_which_holds_verified_events_only() -> None:
    """Gap fills do not re-check signatures, and need not: the store keeps the signed body
    without its signature (so there is nothing to re-check), and only the streams worker
    writes it (its Cassandra role; tests/security/test_store_access.py) after verifying.
    Here: what the worker stores of signed events carries no "sig"; a gap is filled from
    rows a previous owner stored; and an event with a bad signature never reaches the store."""
    from schemas.signing import Registry, Scorer, Signer, generate_key
    from streams.recovery import as_stored

    pem, public = generate_key()
    signer = Signer("feed", pem)
    w = worker(scorers=Registry({"feed": Scorer("feed", public, ("cricsheet",))}))
    ev = match_events()

    async def feed_signed(events: list[Event]) -> None:
        for e in events:
            await w.engine.handle(signer.sign(codec.encode(e)), ack=w.ack(e.seq), partition=0)
        await w.settle()

    await feed_signed(ev[:10])
    stored = w.store.rows[ev[0].match_id]
    assert sorted(stored) == list(range(1, 11))
    assert all(b'"sig"' not in row.body for row in stored.values())
    await w.store.append([as_stored(e) for e in ev[10:20]])  # a previous owner's rows
    forged = Signer("feed", generate_key()[0]).sign(codec.encode(ev[20]))
    await w.engine.handle(forged, ack=w.ack(-1), partition=0)
    await feed_signed([ev[20]])
    assert w.engine.matches[ev[0].match_id].held and 21 not in w.acked
    await asyncio.sleep(0.06)
    await w.engine.tick()
    await w.settle()
    assert (await w.views.read(ev[0].match_id)).position.seq == 21  # type: ignore[union-attr]
    assert [d["reason"] for d in w.sink.dlq] == ["bad_signature"]
    assert stored[21].body == codec.encode(ev[20])  # the real one, not the forged bytes
    w.task.cancel()


class LossyViews(FlakyViews):
    """Redis that is down, and whose client loses a cancel on its way out (Python 3.11's
    ``wait_for`` inside redis-py, runtime.eventloop): the caller sees the error, not the
    cancel."""

    async def _run(self, mode: str, w: Any) -> Any:
        self.calls += 1
        try:
            await asyncio.sleep(10)                # a command that hangs until its timeout
        except asyncio.CancelledError:
            if self.calls > 1:
                raise                              # only the first cancel is lost
        raise ViewStoreError("redis down")


async def test_a_stop_ends_a_match_waiting_for_redis_even_if_the_cancel_is_lost() -> None:
    """Old code: the retry loop went on retrying a Redis that was down after the worker's
    stop had cancelled it, since the one cancel was lost below: the stop hung."""
    w = worker()
    ev = match_events()
    await w.feed(ev[:5])
    w.engine.views = views = LossyViews()
    views.calls = 0
    handling = asyncio.create_task(w.engine.handle(codec.encode(ev[5]), ack=w.ack(6)))
    await asyncio.sleep(0.2)                       # in its first Redis call
    handling.cancel()
    await asyncio.wait({handling}, timeout=2)
    hung = not handling.done()
    handling.cancel()                              # a second cancel, so the test ends anyway
    with contextlib.suppress(asyncio.CancelledError):
        await handling
    w.task.cancel()
    await w.engine.relay.close()
    assert not hung and 6 not in w.acked
