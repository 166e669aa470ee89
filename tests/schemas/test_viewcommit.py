"""The view-commit contract: the Lua script every writer runs, its call layout, and the inverse
of the per-match Redis keys. The script itself runs on the real Redis (marked ``stack``)."""

from __future__ import annotations

import pytest

from schemas.topology import RedisKeys

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
