"""Fixtures for gateway tests: real Redis (the local stack's), an in-process gateway, clients.

Tests that need Redis are marked ``stack``. Without Redis they skip locally but FAIL in CI
(``CI=true``): the real run is never optional there (STYLE.md, principle 11).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bench.gateway.writer import ViewWriter
from gateway.limits import Limits
from gateway.server import Gateway, GatewayConfig
from runtime.redisconn import async_redis, credentials
from schemas.settings import Settings
from schemas.store_access import RedisUser


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Any]:

    client = async_redis(settings, RedisUser.ADMIN, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {settings.redis_url} is required in CI: {exc}")
        pytest.skip(f"Redis not reachable at {settings.redis_url} (stumpcast stack up)")
    yield client
    await client.aclose()


@pytest.fixture
async def writer(redis: Any) -> AsyncIterator[ViewWriter]:
    w = ViewWriter(redis)
    yield w
    for match_id in list(w.state):
        await w.delete(match_id)


@pytest.fixture
def match_id() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def make_config(settings: Settings, tmp_path: Any, **kw: Any) -> GatewayConfig:
    limits = kw.pop("limits", Limits())
    return GatewayConfig(host="127.0.0.1", port=0, redis_url=settings.redis_url, limits=limits,
                         redis_auth=credentials(settings, RedisUser.GATEWAY),
                         panic_dir=tmp_path / "panic", panic_flag=tmp_path / "PANIC",
                         ping_interval=None, **kw)


@pytest.fixture
async def gateway(settings: Settings, redis: Any, tmp_path: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(make_config(settings, tmp_path))
    await gw.start()
    yield gw
    await gw.stop()


class Peer:
    """A test client: raw websockets connection with JSON helpers."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def send(self, doc: dict[str, Any] | bytes | str) -> None:
        await self.conn.send(doc if isinstance(doc, bytes | str) else orjson.dumps(doc).decode())

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        return orjson.loads(raw)

    async def recv_until(self, pred: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
        out = []
        while True:
            msg = await self.recv(timeout)
            out.append(msg)
            if pred(msg):
                return out

    async def quiet(self, wait: float = 0.3) -> list[dict[str, Any]]:
        out = []
        try:
            while True:
                out.append(await self.recv(wait))
        except TimeoutError:
            return out

    async def subscribe(self, channel: str, since: dict[str, int] | None = None,
                        req_id: int = 1) -> list[dict[str, Any]]:
        doc: dict[str, Any] = {"type": "subscribe", "v": 1, "id": req_id, "channel": channel}
        if since is not None:
            doc["since"] = since
        await self.send(doc)
        return await self.recv_until(lambda m: m.get("type") in {"subscribed", "error"})

    async def close(self) -> None:
        await self.conn.close()


async def connect(port: int, path: str = "/ws", **kw: Any) -> Peer:
    from websockets.asyncio.client import connect as ws_connect

    conn = await ws_connect(f"ws://127.0.0.1:{port}{path}", compression=None,
                            ping_interval=None, **kw)
    return Peer(conn)
