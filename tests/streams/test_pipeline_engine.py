"""The pipeline and its engine on the in-memory stores: no Kafka, no Redis, no Cassandra."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from schemas import codec, deadletter, notifications
from schemas.events import Event
from schemas.notifications import Notification
from streams import cricsheet
from streams.engine import Engine, EngineConfig
from streams.eventstore import InMemoryEventStore, StoreBacklog
from streams.pipeline import (
    Accepted,
    Dropped,
    Duplicate,
    Held,
    MatchProcessor,
    MatchState,
    Reason,
    Rejected,
    ScorecardFolder,
    all_notes,
    replay_state,
)
from streams.relay import InMemoryTxnLog, NoteRelay
from streams.viewstore import InMemoryViewStore
from tests.streams.cricsheet_data import DATA_DIR

DATA = DATA_DIR
MATCH = sorted(DATA.glob("*.json"))[0]


def match_events(match_id: str = "m1") -> list[Event]:
    return cricsheet.import_match(cricsheet.load(MATCH), match_id)


def processor(match_id: str = "m1", gap_timeout: float = 5.0) -> MatchProcessor:
    f = ScorecardFolder()
    return MatchProcessor(MatchState(match_id, card=f.initial(match_id)), f, gap_timeout)


def test_in_order_duplicate_and_gap_filled() -> None:
    ev = match_events()
    p = processor()
    assert isinstance(p.offer(ev[0], b"", "t1", 0)[0], Accepted)
    assert isinstance(p.offer(ev[0], b"", "t1b", 0)[0], Duplicate)
    assert isinstance(p.offer(ev[2], b"", "t3", 0)[0], Held)
    assert isinstance(p.offer(ev[3], b"", "t4", 0)[0], Held)
    assert isinstance(p.offer(ev[2], b"", "t3b", 0)[0], Duplicate)  # already held
    out = p.offer(ev[1], b"", "t2", 1)
    assert [type(o) for o in out] == [Accepted] * 3
    assert [o.token for o in out] == ["t2", "t3", "t4"]
    assert p.state.seq == 4 and not p.held and p.gap_since is None


def test_another_event_at_a_folded_or_held_seq_is_a_conflict() -> None:
    ev = match_events()
    p = processor()
    p.offer(ev[0], b"", "t1", 0)
    p.offer(ev[1], b"", "t2", 0)
    assert isinstance(p.offer(ev[4], b"", "t5", 0)[0], Held)
    for seq, token in ((2, "x2"), (5, "x5")):  # folded, held
        other = dataclasses.replace(ev[seq - 1], event_id=f"other-{seq}")
        [out] = p.offer(other, b"", token, 0)
        assert isinstance(out, Rejected) and out.reason is Reason.CONFLICT, out
        assert (out.seq, out.token) == (seq, token) and ev[seq - 1].event_id in out.detail
    assert p.held[5][2] == "t5"  # the first one stays held
    assert [o.token for o in p.offer(ev[2], b"", "t3", 0)] == ["t3"]
    assert [o.token for o in p.offer(ev[3], b"", "t4", 0)] == ["t4", "t5"]


def test_a_gap_is_held_never_rejected_and_looked_up_with_backoff() -> None:
    ev = match_events()
    p = processor(gap_timeout=2.0)
    p.offer(ev[0], b"", None, 0)
    assert isinstance(p.offer(ev[3], b"", "a", 10)[0], Held)
    assert isinstance(p.offer(ev[4], b"", "b", 11)[0], Held)
    assert p.missing() == (2, 3)
    assert not p.gap_due(11.9)
    assert p.gap_due(12.0) and not p.gap_due(12.5)  # then each time the gap's age doubles
    assert not p.gap_due(13.9) and p.gap_due(14.0)
    assert not p.gap_due(17.9) and p.gap_due(18.0)
    assert sorted(p.held) == [4, 5] and p.state.seq == 1  # nothing rejected, nothing dropped
    out = p.offer(ev[1], b"", "x", 20) + p.offer(ev[2], b"", "y", 20)
    assert [o.token for o in out] == ["x", "y", "a", "b"] and p.missing() is None


def test_a_gap_is_bounded_and_what_is_let_go_is_reread() -> None:
    ev = match_events()
    f = ScorecardFolder()
    p = MatchProcessor(MatchState("m1", card=f.initial("m1")), f, 5.0, max_held=2)
    p.offer(ev[0], b"", None, 0)
    outs = [p.offer(e, b"", e.seq, 0)[0] for e in ev[2:5]]
    assert [type(o) for o in outs] == [Held, Held, Dropped]
    assert not p.reread_needed()  # the gap is still open
    filled = p.offer(ev[1], b"", 2, 1)
    assert [o.token for o in filled] == [2, 3, 4] and p.state.seq == 4
    assert p.reread_needed() and not p.reread_needed()  # asked once


class Sink:
    """The worker's outputs; ``kafka`` stands in for the transactional notifications topic."""

    def __init__(self) -> None:
        self.kafka: dict[str, Any] = {}
        self.cards: dict[str, bytes] = {}
        self.dlq: list[dict] = []

    @property
    def notes(self) -> list[Notification]:
        return [notifications.decode(raw) for _, raw in self.kafka.get("topic", [])]

    async def scorecard(self, match_id: str, card: bytes) -> None:
        self.cards[match_id] = card

    async def dead_letter(self, key: bytes | None, value: bytes) -> None:
        dead = deadletter.decode(value)  # the contract holds
        assert key == (dead.match_id.encode() if dead.match_id else None)
        self.dlq.append(orjson.loads(value))


@dataclasses.dataclass
class Rig:
    views: InMemoryViewStore
    store: InMemoryEventStore
    sink: Sink
    engine: Engine
    task: asyncio.Task
    acked: list[int]

    async def feed(self, events: Sequence[Event | bytes]) -> None:
        for e in events:
            raw = e if isinstance(e, bytes) else codec.encode(e)
            seq = -1 if isinstance(e, bytes) else e.seq
            await self.engine.handle(raw, ack=functools.partial(self.acked.append, seq))
        await self.engine.relay.drained()
        await self.engine.backlog.drain()
        await self.engine.cards.flush()


def make_rig(views: InMemoryViewStore | None = None, store: InMemoryEventStore | None = None,
             sink: Sink | None = None) -> Rig:
    views = views or InMemoryViewStore()
    store = store or InMemoryEventStore()
    sink = sink or Sink()
    backlog = StoreBacklog(store, maxsize=100, retry_max=0.01)
    relay = NoteRelay(lambda p: InMemoryTxnLog(sink.kafka, p), retry_max=0.01,
                      reopen_pause=0.01)
    engine = Engine(ScorecardFolder(), views, store, backlog, sink,
                    EngineConfig(("cricsheet", "scorer:*"), gap_timeout=0.05), relay)
    return Rig(views, store, sink, engine, asyncio.create_task(backlog.run()), [])


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = make_rig()
    yield r
    r.task.cancel()


async def expect_final(rig: Rig, events: list[Event]) -> None:
    truth = replay_state(events[0].match_id, events, ScorecardFolder())
    view = await rig.views.read(events[0].match_id)
    assert view.position is not None and view.position.seq == len(events)
    assert orjson.loads(view.card or b"null") == truth.doc
    assert sorted(rig.store.rows[events[0].match_id]) == list(range(1, len(events) + 1))
    assert [orjson.loads(raw)["id"] for _, raw in await rig.views.notes(events[0].match_id)] \
        == [n.id for n in all_notes(truth)]


async def test_a_match_end_to_end(rig: Rig) -> None:
    ev = match_events()
    await rig.feed(ev)
    await expect_final(rig, ev)
    truth = all_notes(replay_state("m1", ev, ScorecardFolder()))
    assert [n.id for n in rig.sink.notes] == [n.id for n in truth]
    assert orjson.loads(rig.sink.cards["m1"]) == replay_state("m1", ev, ScorecardFolder()).doc
    assert sorted(rig.acked) == [e.seq for e in ev]  # every message acked once stored


async def test_rejects_go_to_the_dlq_with_reasons(rig: Rig) -> None:
    ev = match_events()
    stranger = dataclasses.replace(ev[1], source="somebody")
    orphan = dataclasses.replace(ev[5], match_id="nobody")
    await rig.feed([b"{not json", ev[0], stranger, orphan, ev[0], ev[1]])
    reasons = [d["reason"] for d in rig.sink.dlq]
    assert reasons == ["invalid", "unauthorised_source", "unknown_match"]
    assert rig.engine.metrics.duplicates._value.get() == 1
    assert len(rig.acked) == 6


async def test_a_gap_is_never_dead_lettered_nor_acked(rig: Rig) -> None:
    """Old code: after the gap timeout, seq 4 went to the DLQ as sequence_gap, acked."""
    ev = match_events()
    await rig.feed([ev[0], ev[3]])
    await asyncio.sleep(0.06)
    await rig.engine.tick()  # the gap is due: the store is looked at, and lacks seq 2..3
    assert rig.sink.dlq == [] and rig.acked == [1]
    await rig.feed([ev[1], ev[2]])  # the producer sends them (late)
    assert sorted(rig.acked) == [1, 2, 3, 4] and rig.sink.dlq == []
    await rig.feed(ev[4:])
    await expect_final(rig, ev)


async def test_a_gap_is_filled_from_the_event_store(rig: Rig) -> None:
    """A previous owner stored seq 11..20; this worker still holds the match at seq 10 (say
    its memory survived a rebalance): seq 21 waits, then the gap is filled from the store."""
    from streams.recovery import as_stored

    ev = match_events()
    await rig.feed(ev[:10])
    await rig.store.append([as_stored(e) for e in ev[10:20]])
    await rig.feed([ev[20]])
    assert rig.engine.matches["m1"].held and 21 not in rig.acked
    await asyncio.sleep(0.06)
    await rig.engine.tick()
    await rig.feed([])
    assert (await rig.views.read("m1")).position.seq == 21  # type: ignore[union-attr]
    assert 21 in rig.acked and rig.sink.dlq == []
    await rig.feed(ev[21:])
    await expect_final(rig, ev)
    truth = all_notes(replay_state("m1", ev, ScorecardFolder()))
    assert [n.id for n in rig.sink.notes] == [n.id for n in truth]  # the filled ones' too


async def test_redis_flushed_mid_match(rig: Rig) -> None:
    ev = match_events()
    await rig.feed(ev[:100])
    epoch = (await rig.views.read("m1")).position.epoch  # type: ignore[union-attr]
    rig.views.flush()
    await rig.feed(ev[100:])
    await expect_final(rig, ev)
    assert (await rig.views.read("m1")).position.epoch > epoch  # type: ignore[union-attr]


async def test_restart_recovers_from_the_store_without_resending(rig: Rig) -> None:
    ev = match_events()
    await rig.feed(ev[:120])
    sent = len(rig.sink.notes)
    rig.task.cancel()
    again = make_rig(rig.views, rig.store, rig.sink)  # a new worker, same stores and topics
    await again.feed(ev[90:])  # Kafka redelivers from the last committed offset
    await expect_final(again, ev)
    truth = all_notes(replay_state("m1", ev, ScorecardFolder()))
    assert sent < len(truth)
    assert [n.id for n in again.sink.notes] == [n.id for n in truth]  # none sent twice
    again.task.cancel()


async def test_store_down_keeps_the_view_moving(rig: Rig) -> None:
    ev = match_events()
    rig.store.down = True
    for e in ev[:50]:
        await rig.engine.handle(codec.encode(e), ack=functools.partial(rig.acked.append, e.seq))
    await asyncio.sleep(0.05)  # let the backlog try, and fail
    assert (await rig.views.read("m1")).position.seq == 50  # type: ignore[union-attr]
    assert rig.acked == [] and not rig.engine.backlog.healthy
    rig.store.down = False
    await rig.feed(ev[50:])
    await expect_final(rig, ev)
    assert sorted(rig.acked) == [e.seq for e in ev]


async def test_view_rebuilt_under_a_new_epoch_is_adopted(rig: Rig) -> None:
    from streams.engine import view_write

    ev = match_events()
    await rig.feed(ev[:60])
    state = replay_state("m1", ev[:60], ScorecardFolder())
    pos = (await rig.views.read("m1")).position
    assert pos is not None
    w = view_write("m1", pos.epoch + 5, 60, 0, state.ts, None, state.doc or {}, [], 0, True)
    await rig.views.reset(w)
    await rig.feed(ev[60:])
    await expect_final(rig, ev)
    assert (await rig.views.read("m1")).position.epoch == pos.epoch + 5  # type: ignore


async def test_audit_reseeds_a_flushed_view_without_new_events(rig: Rig) -> None:
    ev = match_events()
    await rig.feed(ev)
    rig.views.flush()
    assert await rig.engine.audit() == 1
    await expect_final(rig, ev)
    assert await rig.engine.audit() == 0


async def test_cards_are_conflated_and_acks_wait_for_them() -> None:
    from streams.cards import CardPublisher

    sent: list[tuple[str, bytes]] = []

    async def send(m: str, card: bytes) -> None:
        sent.append((m, card))

    cards, acked = CardPublisher(send), list[int]()
    for seq in (1, 2, 3):
        cards.update("m", seq, f"card{seq}".encode())
        cards.gate("m", seq, functools.partial(acked.append, seq))
    assert acked == [] and sent == []
    assert await cards.flush() == 1
    assert sent == [("m", b"card3")] and acked == [1, 2, 3]
    cards.gate("m", 3, lambda: acked.append(99))  # already covered: acked at once
    assert acked[-1] == 99 and await cards.flush() == 0


async def test_lanes_run_matches_side_by_side(rig: Rig) -> None:
    from streams.lanes import Lanes

    lanes = Lanes(rig.engine, max_in_flight=50)
    matches = {m: match_events(m) for m in ("a", "b", "c")}
    longest = max(len(v) for v in matches.values())
    for i in range(longest):  # interleaved, as a partition would deliver them
        for events in matches.values():
            if i < len(events):
                await lanes.submit(codec.encode(events[i]), ack=None)
    await lanes.idle()
    await rig.engine.backlog.drain()
    for events in matches.values():
        await expect_final(rig, events)


def rejects(rig: Rig, reason: str) -> float:
    value = rig.engine.metrics.registry.get_sample_value("stumpcast_streams_rejects_total",
                                                         {"reason": reason})
    return value or 0.0


async def test_same_seq_another_event_id_is_a_conflict(rig: Rig,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    ev = match_events()
    impostor = dataclasses.replace(ev[3], event_id="impostor-4")  # seq 4, not the event at 4
    with caplog.at_level("ERROR", logger="streams.engine"):
        await rig.feed([*ev[:6], impostor, ev[3]])  # then a true duplicate of seq 4
    assert [d["reason"] for d in rig.sink.dlq] == ["conflict"]
    dead = rig.sink.dlq[0]
    assert (dead["match_id"], dead["seq"], dead["event"]["event_id"]) == ("m1", 4, "impostor-4")
    assert ev[3].event_id in dead["detail"]
    assert rejects(rig, "conflict") == 1
    assert rig.engine.metrics.duplicates._value.get() == 1  # the true duplicate: silent
    assert rig.store.rows["m1"][4].event_id == ev[3].event_id  # the impostor is not stored
    assert [r.levelname for r in caplog.records if "conflict" in r.getMessage()] == ["ERROR"]
    assert sorted(rig.acked) == sorted([e.seq for e in ev[:6]] + [4, 4])
    await rig.feed(ev[6:])
    await expect_final(rig, ev)


async def test_a_conflict_after_a_restart_is_told_from_the_store(rig: Rig) -> None:
    ev = match_events()
    await rig.feed(ev[:30])
    again = make_rig(rig.views, rig.store)  # a new worker: nothing in memory yet
    impostor = dataclasses.replace(ev[9], event_id="impostor-10")
    await again.feed([ev[29], impostor, ev[9]])
    assert [d["reason"] for d in again.sink.dlq] == ["conflict"]
    assert rejects(again, "conflict") == 1
    assert again.engine.metrics.duplicates._value.get() == 2
    again.task.cancel()
