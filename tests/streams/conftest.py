"""Fixtures for the streams tests: the real stack's Redis and Cassandra, or a clear failure.

Outside CI a missing server skips the ``stack`` tests; with ``CI=true`` it fails them, so the
real run is never optional there (STYLE.md principle 11).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def require(host_port: str, what: str) -> None:
    if _reachable(host_port):
        return
    message = f"{what} at {host_port} is not reachable: run `stumpcast stack up`"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def redis_url(settings: Settings) -> str:
    from urllib.parse import urlparse

    u = urlparse(settings.redis_url)
    require(f"{u.hostname}:{u.port or 6379}", "Redis")
    return settings.redis_url


@pytest.fixture
def cassandra(settings: Settings) -> Iterator[Settings]:
    require(f"{settings.cassandra_hosts[0]}:{settings.cassandra_port}", "Cassandra")
    yield settings


@pytest.fixture
def kafka(settings: Settings) -> Settings:
    require(settings.kafka_bootstrap[0], "Kafka")
    return settings


@pytest.fixture
def match_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def aioredis(redis_url: str) -> AsyncIterator[object]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()
