"""The Redis merge of per-partition partials (merge.lua), on the real Redis: a final is final."""

from __future__ import annotations

import uuid

import pytest

from analytics.aggregate import FlushPlan, Partial
from analytics.sink import RedisSink
from analytics.window import TOTAL, Stats
from schemas.topology import RedisKeys

pytestmark = pytest.mark.stack
W = 1_790_000_000_000


@pytest.fixture
def sink(redis_stack):
    import redis

    r = redis.Redis.from_url(redis_stack.redis_url)
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
