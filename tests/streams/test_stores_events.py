"""The event store contract, run against the in-memory fake and the real Cassandra."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from schemas.settings import Settings
from streams.eventstore import (
    CassandraEventStore,
    EventStore,
    EventStoreError,
    InMemoryEventStore,
    LazyCassandraEventStore,
    StoreBacklog,
    StoredEvent,
)

T0 = dt.datetime(2023, 5, 29, 14, 0, tzinfo=dt.UTC)


def ev(match_id: str, seq: int, event_id: str | None = None) -> StoredEvent:
    return StoredEvent(match_id, seq, event_id or f"{match_id}:{seq}", "delivery",
                       T0 + dt.timedelta(seconds=seq), f'{{"seq":{seq}}}'.encode())


class EventStoreContract:
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        raise NotImplementedError
        yield

    async def test_empty(self, store: EventStore, match_id: str) -> None:
        assert await store.load(match_id) == []

    async def test_append_reads_back_in_seq_order(self, store: EventStore, match_id: str) -> None:
        await store.append([ev(match_id, s) for s in (3, 1, 2)])
        got = await store.load(match_id)
        assert [e.seq for e in got] == [1, 2, 3]
        assert got[0] == ev(match_id, 1)
        assert [e.seq for e in await store.load(match_id, after=1)] == [2, 3]

    async def test_append_twice_is_idempotent(self, store: EventStore, match_id: str) -> None:
        await store.append([ev(match_id, 1), ev(match_id, 2)])
        await store.append([ev(match_id, 2), ev(match_id, 1)])
        assert len(await store.load(match_id)) == 2

    async def test_append_if_absent_keeps_the_first(self, store: EventStore,
                                                    match_id: str) -> None:
        assert await store.append_if_absent(ev(match_id, 1)) is True
        assert await store.append_if_absent(ev(match_id, 1, "other")) is False
        assert (await store.load(match_id))[0].event_id == f"{match_id}:1"

    async def test_many_events(self, store: EventStore, match_id: str) -> None:
        await store.append([ev(match_id, s) for s in range(1, 6001)])
        assert [e.seq for e in await store.load(match_id)] == list(range(1, 6001))


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        yield InMemoryEventStore()


@pytest.mark.stack
class TestCassandraEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, cassandra_stack: Settings) -> AsyncIterator[EventStore]:
        s = cassandra_stack
        store = await asyncio.to_thread(CassandraEventStore.connect, s)
        yield store
        store.close()


async def test_backlog_holds_events_while_the_store_is_down(match_id: str) -> None:
    store = InMemoryEventStore()
    backlog = StoreBacklog(store, maxsize=10, retry_max=0.02)
    task = asyncio.create_task(backlog.run())
    stored: list[int] = []
    store.down = True
    for s in (1, 2, 3):
        await backlog.put(ev(match_id, s), on_stored=lambda s=s: stored.append(s))
    await asyncio.sleep(0.1)
    assert stored == [] and not backlog.healthy and backlog.failures > 0
    store.down = False
    await asyncio.wait_for(backlog.drain(), 2)
    assert stored == [1, 2, 3] and backlog.healthy
    assert [e.seq for e in await store.load(match_id)] == [1, 2, 3]
    task.cancel()


@pytest.mark.stack
async def test_lazy_store_reports_an_unreachable_cassandra(match_id: str) -> None:
    settings = dataclasses.replace(Settings.from_env(), cassandra_hosts=("127.0.0.1",),
                                   cassandra_port=1, cassandra_auth="none")  # nothing on 1
    store = LazyCassandraEventStore(settings)
    with pytest.raises(EventStoreError):
        await store.load(match_id)
