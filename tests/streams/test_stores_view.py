"""The view store contract, run against the in-memory fake and the real Redis (principle 11)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from schemas.notifications import note_id
from schemas.topology import RedisKeys
from schemas.view import COMMIT_FIELD, UPDATE_FIELD
from streams.viewstore import (
    InMemoryViewStore,
    Position,
    RedisViewStore,
    Status,
    ViewStore,
    ViewWrite,
    next_epoch,
)


def write(match_id: str, seq: int, prev: int, epoch: int = 1, notes: int = 0) -> ViewWrite:
    return ViewWrite(match_id, epoch, seq, prev, f'{{"seq":{seq}}}'.encode(),
                     f'{{"u":{seq}}}'.encode(),
                     tuple((note_id(seq, i), f"n{seq}.{i}".encode()) for i in range(notes)),
                     now_ms=1000 + seq)


class ViewStoreContract:
    @pytest.fixture
    async def store(self) -> AsyncIterator[ViewStore]:
        raise NotImplementedError
        yield

    async def test_empty(self, store: ViewStore, match_id: str) -> None:
        view = await store.read(match_id)
        assert view.card is None and view.position is None
        assert await store.history(match_id) == []

    async def test_commits_move_card_position_history_together(
            self, store: ViewStore, match_id: str) -> None:
        for seq in (1, 2, 3):
            result = await store.commit(write(match_id, seq, seq - 1))
            assert result.status is Status.APPLIED
        view = await store.read(match_id)
        assert view.card == b'{"seq":3}' and view.position == Position(1, 3)
        assert [eid for eid, _ in await store.history(match_id)] == ["1-0", "2-0", "3-0"]
        assert (await store.history(match_id))[1][1] == b'{"u":2}'

    async def test_replayed_event_changes_nothing(self, store: ViewStore, match_id: str) -> None:
        await store.commit(write(match_id, 1, 0, notes=1))
        await store.commit(write(match_id, 2, 1, notes=2))
        again = await store.commit(write(match_id, 1, 0, notes=1))
        assert again.status is Status.DUPLICATE and again.stored == Position(1, 2)
        assert (await store.read(match_id)).card == b'{"seq":2}'
        assert len(await store.history(match_id)) == 2
        assert [i for i, _ in await store.notes(match_id)] == ["1-0", "2-0", "2-1"]

    async def test_conflict_when_not_folded_from_stored_position(
            self, store: ViewStore, match_id: str) -> None:
        await store.commit(write(match_id, 1, 0))
        assert (await store.commit(write(match_id, 3, 2))).status is Status.CONFLICT
        stale_epoch = await store.commit(write(match_id, 2, 1, epoch=7))
        assert stale_epoch.status is Status.CONFLICT and stale_epoch.stored == Position(1, 1)
        assert (await store.read(match_id)).position == Position(1, 1)

    async def test_missing_view_is_a_conflict_for_a_later_event(
            self, store: ViewStore, match_id: str) -> None:
        result = await store.commit(write(match_id, 5, 4))
        assert result.status is Status.CONFLICT and result.stored is None

    async def test_reset_raises_epoch_and_restarts_history(
            self, store: ViewStore, match_id: str) -> None:
        for seq in (1, 2):
            await store.commit(write(match_id, seq, seq - 1, notes=1))
        epoch = next_epoch(Position(1, 2), now_ms=0)
        assert epoch == 2
        result = await store.reset(write(match_id, 2, 0, epoch=epoch, notes=1))
        assert result.status is Status.APPLIED
        assert [i for i, _ in await store.history(match_id)] == ["2-0"]
        assert (await store.read(match_id)).position == Position(2, 2)
        assert len(await store.notes(match_id)) == 2  # re-adding a note is a no-op
        lower = await store.reset(write(match_id, 2, 0, epoch=2))
        assert lower.status is Status.CONFLICT
        assert (await store.commit(write(match_id, 3, 2, epoch=2))).status is Status.APPLIED

    async def test_history_is_bounded(self, store: ViewStore, match_id: str) -> None:
        for seq in range(1, 8):
            await store.commit(write(match_id, seq, seq - 1))
        assert [i for i, _ in await store.history(match_id)] == ["3-0", "4-0", "5-0", "6-0",
                                                                  "7-0"]


class TestInMemoryViewStore(ViewStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[ViewStore]:
        yield InMemoryViewStore(history_maxlen=5)


@pytest.mark.stack
class TestRedisViewStore(ViewStoreContract):
    @pytest.fixture
    async def store(self, aioredis: Any, match_id: str) -> AsyncIterator[ViewStore]:
        yield RedisViewStore(aioredis, history_maxlen=5)
        await aioredis.delete(RedisKeys.card(match_id), RedisKeys.position(match_id),
                              RedisKeys.history(match_id), RedisKeys.notifications(match_id))
        await aioredis.zrem(RedisKeys.live_matches, match_id)

    async def test_history_entries_carry_their_commit_time(
            self, store: ViewStore, aioredis: Any, match_id: str) -> None:
        """What the gateway's delivery latency is measured from (``COMMIT_FIELD``, Redis TIME),
        in every entry, a reset's too; the update bytes stay as the engine encoded them."""
        seconds, micros = await aioredis.time()
        before = int(seconds) * 1000 + int(micros) // 1000
        await store.commit(write(match_id, 1, 0))
        await store.reset(write(match_id, 1, 0, epoch=2))
        await store.commit(write(match_id, 2, 1, epoch=2))
        rows = await aioredis.xrange(RedisKeys.history(match_id))
        assert [i for i, _ in rows] == [b"1-0", b"2-0"]
        for _, fields in rows:
            assert set(fields) == {UPDATE_FIELD.encode(), COMMIT_FIELD.encode()}
            assert 0 <= int(fields[COMMIT_FIELD.encode()]) - before < 5000
        assert rows[1][1][UPDATE_FIELD.encode()] == b'{"u":2}'
