"""The notifier's Redis retry loop ends on a stop's cancel even when the cancel is lost below
it (Python 3.11's ``wait_for`` inside redis-py, runtime.eventloop)."""

from __future__ import annotations

import asyncio
import contextlib

from notifier.worker import Notifier
from schemas.settings import Settings


async def test_recording_a_delivery_stops_on_a_cancel_lost_in_its_redis_call() -> None:
    """Old code: ``_until_done`` retried a Redis that was down for ever after the stop's one
    cancel was lost inside the failed call: the worker's stop hung."""
    notifier = Notifier(Settings.from_env(), rand=lambda: 0.0)
    calls = 0

    async def lossy() -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(10)             # a command that hangs until its timeout
        except asyncio.CancelledError:
            if calls > 1:
                raise                           # only the first cancel is lost
        raise ConnectionError("redis down")

    task = asyncio.create_task(notifier._until_done("record delivered", lossy))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    hung = not task.done()
    task.cancel()                               # a second cancel, so the test ends anyway
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not hung and calls == 1
