"""The gateway's workers and the bench's load clients run on uvloop when it is installed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.workers import loop_factory, run_loop


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("STUMPCAST_EVENT_LOOP", raising=False)
    assert loop_factory() is uvloop.new_event_loop
    assert run_loop(_loop_type()) is uvloop.Loop


def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUMPCAST_EVENT_LOOP", "asyncio")
    assert loop_factory() is None
    assert issubclass(run_loop(_loop_type()), asyncio.BaseEventLoop)


def test_websockets_round_trip_on_the_chosen_loop() -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(conn: object) -> None:
        async for msg in conn:  # type: ignore[attr-defined]
            await conn.send(msg)  # type: ignore[attr-defined]

    async def main() -> str:
        async with serve(echo, "127.0.0.1", 0, reuse_port=True) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("over")
                return str(await ws.recv())

    assert run_loop(main()) == "over"
