"""The feed's once-a-second position check, without Redis: a reply that is merely older than
an XREAD reply processed first is not a rebuild; an epoch change or Redis going backwards is."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.cache import MatchCache, Outcome
from gateway.feed import Feed
from gateway.hub import Hub
from gateway.limits import Limits
from schemas.view import decode_update, make_update


class FakePipe:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.n = 0

    async def __aenter__(self) -> FakePipe:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def exists(self, _key: str) -> None:  # the position check's liveness read
        self.n += 1

    def hgetall(self, _key: str) -> None:
        self.n += 1

    def get(self, _key: str) -> None:
        self.n += 1

    def xrevrange(self, *_a: Any, **_k: Any) -> None:
        self.n += 1

    async def execute(self) -> list[Any]:
        if self.redis.before_reply is not None:
            self.redis.before_reply()  # what the event loop ran before this reply came back
        if self.n == 3:  # a view reload: no card, so the reload fails (logged, not raised)
            return [None, {}, []]
        return [True, {b"epoch": str(self.redis.epoch).encode(),
                       b"seq": str(self.redis.seq).encode()}]


class FakeRedis:
    def __init__(self, epoch: int, seq: int) -> None:
        self.epoch, self.seq = epoch, seq
        self.before_reply: Any = None

    def pipeline(self, transaction: bool = True) -> FakePipe:
        return FakePipe(self)


def feed_at(seq: int, redis: FakeRedis) -> tuple[Feed, MatchCache]:
    feed = Feed(redis, None, Hub(Limits()))
    cache = MatchCache("m", 1, seq, "t", {"runs": seq}, [])
    feed.matches["m"] = cache
    return feed, cache


def advance(cache: MatchCache) -> None:
    raw = make_update("m", 1, cache.seq + 1, cache.seq, "t", cache.card,
                      {"runs": cache.seq + 1}).encode()
    assert cache.apply(decode_update(raw), raw) is Outcome.APPLIED


def test_a_position_read_overtaken_by_the_stream_is_not_a_rebuild() -> None:
    redis = FakeRedis(epoch=1, seq=10)
    feed, cache = feed_at(10, redis)
    redis.before_reply = lambda: advance(cache)  # the XREAD reply with seq 11 came first
    asyncio.run(feed.check_positions())
    assert feed.stats.resets == 0 and feed.matches["m"] is cache and cache.seq == 11


def test_redis_behind_what_the_cache_held_before_asking_is_a_rebuild() -> None:
    redis = FakeRedis(epoch=1, seq=7)
    feed, _ = feed_at(10, redis)
    asyncio.run(feed.check_positions())
    assert feed.stats.resets == 1


def test_a_new_epoch_is_a_rebuild() -> None:
    redis = FakeRedis(epoch=2, seq=10)
    feed, _ = feed_at(10, redis)
    asyncio.run(feed.check_positions())
    assert feed.stats.resets == 1
