"""The Redis merge of per-partition partials (merge.lua), on the real Redis: a final is final."""

from __future__ import annotations

import uuid

import pytest

from analytics.aggregate import FlushPlan, Partial
from analytics.sink import RedisSink
from analytics.window import TOTAL, Stats
from runtime.redisconn import sync_redis
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys

pytestmark = pytest.mark.stack
W = 1_790_000_000_000


@pytest.fixture
def sink(redis_stack):

    r = sync_redis(redis_stack, RedisUser.ADMIN)
    match_id = f"test-merge-{uuid.uuid4().hex[:8]}"
    yield RedisSink(r, "exact", partitions=2, step_ms=10_000), match_id
    r.delete(RedisKeys.concurrency_partials(match_id, W, True),
             RedisKeys.concurrency(match_id), RedisKeys.watching(match_id))
    r.close()


def _final(match_id: str, p: int, sessions: int | None) -> FlushPlan:
    part = {} if sessions is None else {TOTAL: Stats(sessions, sessions, 0, 0)}
    return FlushPlan(finals=[Partial(match_id, W, W + 20_000, True, {p: part})])


def _total(records) -> int:
    (total,) = [r.concurrent for r in records if (r.region, r.cdn) == ("*", "*")]
    return total


@pytest.mark.parametrize("again", [None, 3], ids=["empty filler", "part of the beats"])
def test_a_partitions_final_partial_is_written_once(sink, again):
    """A re-assigned partition closes a window again, with nothing (the filler) or with part of
    its beats (re-read from its committed offset): its first partial stands."""
    s, match_id = sink
    assert s.write(_final(match_id, 0, 5), 0) == []          # one of two partitions: pending
    assert s.write(_final(match_id, 0, again), 0) == []
    assert _total(s.write(_final(match_id, 1, 4), 0)) == 9


def test_a_partial_redis_refuses_is_skipped_and_the_rest_of_the_flush_stands(sink, monkeypatch):
    """A script error on one partial (here a partial that is not JSON, as a bug would make it)
    costs that partial only: the other partials of the flush are merged and published."""
    import redis.exceptions

    from analytics import sink as sink_module

    s, match_id = sink
    other = f"{match_id}-other"
    good = sink_module.encode_part
    monkeypatch.setattr(sink_module, "encode_part",
                        lambda part: b"not json" if part.get(TOTAL) == Stats(7, 7, 0, 0)
                        else good(part))
    plan = FlushPlan(finals=[Partial(other, W, W + 20_000, True, {0: {TOTAL: Stats(7, 7, 0, 0)}}),
                             Partial(match_id, W, W + 20_000, True,
                                     {0: {TOTAL: Stats(5, 5, 0, 0)},
                                      1: {TOTAL: Stats(4, 4, 0, 0)}})])
    try:
        assert _total(s.write(plan, 0)) == 9
        ((partial, exc),) = s.skipped
        assert partial.match_id == other and isinstance(exc, redis.exceptions.ResponseError)
    finally:
        s.redis.delete(RedisKeys.concurrency_partials(other, W, True))
