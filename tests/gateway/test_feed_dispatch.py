"""The feed routes each stream of an XREAD reply by its key (``RedisKeys.match_of``), without
Redis; a key it does not read is logged and dropped. The commit time of the newest update is
what the delivery-latency metric observes."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.cache import MatchCache, NotesCache
from gateway.feed import Feed
from gateway.hub import Hub
from gateway.limits import Limits
from schemas.topology import RedisKeys
from schemas.view import COMMIT_FIELD, UPDATE_FIELD, make_update

U, T = UPDATE_FIELD.encode(), COMMIT_FIELD.encode()


def feed_with_match() -> tuple[Feed, MatchCache, list[float]]:
    seen: list[float] = []
    feed = Feed(None, None, Hub(Limits()), on_latency=seen.append)
    cache = MatchCache("m", 1, 1, "t", {"runs": 1}, [])
    feed.matches["m"] = cache
    feed.notes["m"] = NotesCache("m")
    return feed, cache, seen


def entry(seq: int, commit_ms: int | None) -> tuple[bytes, dict[bytes, bytes]]:
    raw = make_update("m", 1, seq, seq - 1, "t", {"runs": seq - 1}, {"runs": seq}).encode()
    fields = {U: raw} if commit_ms is None else {U: raw, T: str(commit_ms).encode()}
    return f"{seq}-0".encode(), fields


def test_history_and_notes_are_routed_by_key() -> None:
    feed, cache, seen = feed_with_match()
    commit_ms = time.time_ns() // 1_000_000 - 40
    asyncio.run(feed._dispatch(RedisKeys.history("m").encode(),
                               [entry(2, commit_ms - 10), entry(3, commit_ms)]))
    assert cache.seq == 3
    assert len(seen) == 1 and 0.04 <= seen[0] < 1.0  # the batch's newest commit
    asyncio.run(feed._dispatch(RedisKeys.notifications("m"), [(b"3-0", {U: b'{"n":1}'})]))
    assert feed.notes["m"].last == (3, 0)


def test_an_entry_without_commit_time_is_delivered_but_not_timed() -> None:
    feed, cache, seen = feed_with_match()
    asyncio.run(feed._dispatch(RedisKeys.history("m"), [entry(2, None)]))
    assert cache.seq == 2 and seen == []


@pytest.mark.parametrize("key", [b"elsewhere:hist:m", RedisKeys.live_matches.encode()])
def test_a_key_the_feed_does_not_read_is_logged_and_dropped(
        key: bytes, caplog: pytest.LogCaptureFixture) -> None:
    feed, cache, seen = feed_with_match()
    with caplog.at_level(logging.ERROR, "stumpcast.gateway.feed"):
        asyncio.run(feed._dispatch(key, [entry(2, 1)]))
    assert cache.seq == 1 and seen == [] and "does not read" in caplog.text


def test_another_kind_of_match_key_is_ignored() -> None:
    feed, cache, seen = feed_with_match()
    asyncio.run(feed._dispatch(RedisKeys.watching("m"), [entry(2, 1)]))
    assert cache.seq == 1 and seen == []
