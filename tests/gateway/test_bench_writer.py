"""The tests' and benchmarks' view writer runs the production view commit: a write not folded
from the stored position is refused, as the streams worker's would be."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.gateway.writer import CommitRefused, ViewWriter
from schemas.topology import RedisKeys
from schemas.viewcommit import Position, Status

pytestmark = pytest.mark.stack


def card(runs: int) -> dict[str, Any]:
    return {"runs": runs}


async def test_the_bench_writer_is_refused_off_the_stored_position(
        writer: ViewWriter, redis: Any, match_id: str) -> None:
    await writer.publish(match_id, card(1))
    await writer.publish(match_id, card(2))
    writer.state[match_id].seq = 5  # the writer believes the view is at 5; Redis holds 2
    with pytest.raises(CommitRefused) as refused:
        await writer.publish(match_id, card(6))
    assert refused.value.result.status is Status.CONFLICT
    assert refused.value.result.stored == Position(1, 2)
    writer.state[match_id].seq = 0  # and a replay of seq 1 is a no-op
    with pytest.raises(CommitRefused) as replayed:
        await writer.publish(match_id, card(1))
    assert replayed.value.result.status is Status.DUPLICATE
    assert await redis.get(RedisKeys.card(match_id)) == orjson.dumps(card(2))
    assert await redis.hgetall(RedisKeys.position(match_id)) == {b"epoch": b"1", b"seq": b"2"}
    assert await redis.xlen(RedisKeys.history(match_id)) == 2
