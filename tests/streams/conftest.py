"""Fixtures for the streams tests, on top of ``tests/conftest.py``'s stack checks (which skip
locally and fail under CI when a server is missing)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from runtime.redisconn import async_redis
from schemas.settings import Settings
from schemas.store_access import RedisUser


@pytest.fixture
def match_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def aioredis(redis_stack: Settings) -> AsyncIterator[object]:

    client = async_redis(redis_stack, RedisUser.ADMIN)
    yield client
    await client.aclose()
