"""The view-commit contract: the Lua script every writer runs, its call layout, and the inverse
of the per-match Redis keys. The script itself runs on the real Redis (marked ``stack``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import redisconn
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from schemas.view import COMMIT_FIELD, UPDATE_FIELD
from schemas.viewcommit import (
    CommitResult,
    Position,
    Status,
    ViewCommitter,
    ViewWrite,
    parse_reply,
    script_call,
    source,
)

# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["card", "position", "history", "notifications", "watching"])
@pytest.mark.parametrize("match_id", ["m1", "ipl-2023.final", "odd:id:with:colons"])
def test_match_of_inverts_every_per_match_key(kind: str, match_id: str) -> None:
    key = getattr(RedisKeys, kind)(match_id)
    assert RedisKeys.match_of(key) == (kind, match_id)
    assert RedisKeys.match_of(key.encode()) == (kind, match_id)  # as XREAD names it


@pytest.mark.parametrize("key", [
    RedisKeys.live_matches, RedisKeys.smoke, RedisKeys.webhooks, RedisKeys.health("gateway"),
    RedisKeys.concurrency("m"), RedisKeys.concurrency_partials("m", 0, True),
    RedisKeys.views("m"), RedisKeys.views("m", "hll"), RedisKeys.webhook_delivered("s"),
    "other:hist:m", "hist:m", "stumpcast:hist:", "stumpcast:hist", "", "stumpcast:",
])
def test_match_of_refuses_a_foreign_key(key: str) -> None:
    with pytest.raises(ValueError, match="not a per-match"):
        RedisKeys.match_of(key)


@pytest.mark.parametrize("match_id", ["m1", "ipl-2023.final", "odd:id:with:colons", "a}b{c"])
def test_every_key_of_one_match_is_in_one_cluster_slot(match_id: str) -> None:
    """Redis Cluster runs a script only when all its keys hash to one slot (CROSSSLOT
    otherwise): the match's hash tag puts every per-match key in the same one."""
    from redis.crc import key_slot

    keys = [RedisKeys.card(match_id), RedisKeys.position(match_id),
            RedisKeys.history(match_id), RedisKeys.notifications(match_id),
            RedisKeys.watching(match_id), RedisKeys.concurrency(match_id),
            RedisKeys.concurrency_partials(match_id, 60_000, True),
            RedisKeys.concurrency_partials(match_id, 60_000, False),
            RedisKeys.views(match_id), RedisKeys.views(match_id, "hll"),
            RedisKeys.ingest_seqs(match_id), RedisKeys.ingest_ids(match_id)]
    assert len({key_slot(k.encode()) for k in keys}) == 1



def test_matches_spread_over_the_slots() -> None:
    """The tag is the match's, not a constant: matches are spread over the cluster's masters."""
    from redis.crc import key_slot

    assert len({key_slot(RedisKeys.card(f"m-{i}").encode()) for i in range(20)}) > 10


def test_the_cluster_call_leaves_out_the_live_index() -> None:
    keys, _ = script_call("commit", write("m", 1, 0), live=False)
    assert keys == [RedisKeys.card("m"), RedisKeys.position("m"), RedisKeys.history("m"),
                    RedisKeys.notifications("m")]


# -- call layout -----------------------------------------------------------------------------


def write(match_id: str, seq: int, prev: int, epoch: int = 1, notes: int = 0) -> ViewWrite:
    return ViewWrite(match_id, epoch, seq, prev, f'{{"seq":{seq}}}'.encode(),
                     f'{{"u":{seq}}}'.encode(),
                     tuple((f"{seq}-{i}", f"n{seq}.{i}".encode()) for i in range(notes)),
                     now_ms=1000 + seq)


def test_script_call_passes_the_encoded_bytes_through() -> None:
    keys, argv = script_call("commit", write("m", 3, 2, notes=2), maxlen=7)
    assert keys == [RedisKeys.card("m"), RedisKeys.position("m"), RedisKeys.history("m"),
                    RedisKeys.notifications("m"), RedisKeys.live_matches]
    assert argv == ["commit", 1, 3, 2, b'{"seq":3}', b'{"u":3}', 7, 1003, "m",
                    "3-0", b"n3.0", "3-1", b"n3.1"]


def test_parse_reply() -> None:
    assert parse_reply([1, 5, 3]) == CommitResult(Status.APPLIED, Position(5, 3))
    assert parse_reply([b"-1", b"-1", b"-1"]) == CommitResult(Status.CONFLICT, None)


def test_the_script_is_package_data_of_schemas() -> None:
    text = source()
    assert "HMGET" in text and "'TIME'" in text  # read from schemas/viewcommit.lua


# -- the script on the real Redis ------------------------------------------------------------


@pytest.fixture
def sync_redis(redis_stack: Settings) -> Iterator[Any]:

    client = redisconn.sync_redis(redis_stack, RedisUser.ADMIN)
    yield client
    client.close()


@pytest.fixture
def match_id(sync_redis: Any) -> Iterator[str]:
    m = f"test-vc-{uuid.uuid4().hex[:12]}"
    yield m
    sync_redis.delete(RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                      RedisKeys.notifications(m))
    sync_redis.zrem(RedisKeys.live_matches, m)


def redis_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.stack
def test_a_history_entry_carries_the_update_and_its_commit_time(
        sync_redis: Any, match_id: str) -> None:
    views = ViewCommitter(sync_redis)
    before = redis_ms(sync_redis)
    assert views.commit(write(match_id, 1, 0)).status is Status.APPLIED
    after = redis_ms(sync_redis)
    [(entry_id, fields)] = sync_redis.xrange(RedisKeys.history(match_id))
    assert entry_id == b"1-0"
    assert set(fields) == {UPDATE_FIELD.encode(), COMMIT_FIELD.encode()}
    assert fields[UPDATE_FIELD.encode()] == b'{"u":1}'  # the writer's bytes, untouched
    assert before <= int(fields[COMMIT_FIELD.encode()]) <= after
    assert sync_redis.zscore(RedisKeys.live_matches, match_id) == 1001


@pytest.mark.stack
def test_a_write_not_folded_from_the_stored_position_is_refused(
        sync_redis: Any, match_id: str) -> None:
    views = ViewCommitter(sync_redis)
    for seq in (1, 2):
        assert views.commit(write(match_id, seq, seq - 1)).status is Status.APPLIED
    refused = views.commit(write(match_id, 4, 3))  # prev_seq 3, but Redis holds 2
    assert refused == CommitResult(Status.CONFLICT, Position(1, 2))
    assert views.commit(write(match_id, 1, 0)).status is Status.DUPLICATE
    assert sync_redis.get(RedisKeys.card(match_id)) == b'{"seq":2}'
    assert sync_redis.hgetall(RedisKeys.position(match_id)) == {b"epoch": b"1", b"seq": b"2"}
    assert [i for i, _ in sync_redis.xrange(RedisKeys.history(match_id))] == [b"1-0", b"2-0"]


@pytest.mark.stack
def test_an_unknown_mode_is_an_error(sync_redis: Any, match_id: str) -> None:
    import redis

    views = ViewCommitter(sync_redis)
    with pytest.raises(redis.ResponseError, match="unknown mode"):
        views.run("upsert", write(match_id, 1, 0))  # type: ignore[arg-type]
    assert sync_redis.exists(RedisKeys.card(match_id)) == 0
