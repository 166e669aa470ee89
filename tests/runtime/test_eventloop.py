"""The gateway's workers, the streams worker and the bench's load clients run on uvloop when it
is installed; ``STUMPCAST_EVENT_LOOP=asyncio`` (``Settings.event_loop``) keeps asyncio's."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from runtime.eventloop import loop_factory, raise_if_cancelled, run_loop
from schemas.settings import Settings, SettingsError


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    kind = Settings.from_env({}).event_loop
    assert kind == "uvloop"
    assert loop_factory(kind) is uvloop.new_event_loop
    assert run_loop(_loop_type(), kind) is uvloop.Loop


def test_asyncio_on_request() -> None:
    kind = Settings.from_env({"STUMPCAST_EVENT_LOOP": "asyncio"}).event_loop
    assert loop_factory(kind) is None
    assert issubclass(run_loop(_loop_type(), kind), asyncio.BaseEventLoop)
    with pytest.raises(SettingsError, match="STUMPCAST_EVENT_LOOP"):
        Settings.from_env({"STUMPCAST_EVENT_LOOP": "trio"})


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


async def test_raise_if_cancelled_raises_a_cancel_that_was_lost() -> None:
    """A cancel that something below swallowed (as 3.11's ``wait_for`` can, around every
    redis-py command) still ends the loop at its next check."""
    turns = []

    async def loop() -> None:
        while True:
            raise_if_cancelled()
            turns.append(1)
            with contextlib.suppress(asyncio.CancelledError):  # a library that loses it
                await asyncio.sleep(10)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert len(turns) == 1


async def test_raise_if_cancelled_is_silent_when_nothing_was_cancelled() -> None:
    raise_if_cancelled()  # in a task, not cancelled
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    raise_if_cancelled()
