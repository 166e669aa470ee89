"""The gateway's Redis loops end on their first cancellation, wherever it lands (stack).

A stop cancels each background task once. Python 3.11's ``asyncio.wait_for`` returns the
inner result instead of raising when the cancel arrives after the inner awaitable finished but
before ``wait_for`` resumed (CPython gh-86296; 3.12 rebuilt ``wait_for`` on
``asyncio.timeout``), and redis-py sends every command through
``wait_for(..., socket_timeout)``. So a cancel that lands while a command is being written is
lost: the old loops ran on (``Feed.run``, ``Feed.watch_positions``, ``FlagFeed.run`` logged
"still running" at a SIGTERM under load, and ``FlagFeed`` then "redis unavailable" once its
client was closed under it). Under load the window is a few loop turns per command; here the
cancel is put into it on purpose: the command's own write schedules it, on the real Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from schemas.flags import FLAGS_LOG_KEY
from tests.gateway.conftest import connect
from tests.gateway.test_gateway_stack import card

pytestmark = pytest.mark.stack


def cancel_at_send(monkeypatch: Any, marker: tuple[bytes, ...],
                   victim: asyncio.Task[Any]) -> asyncio.Event:
    """The next Redis command containing every part of ``marker`` cancels ``victim`` as its
    write ends, i.e. inside redis-py's ``wait_for`` around the send (set when done)."""
    from redis.asyncio.connection import AbstractConnection

    real = AbstractConnection._send_packed_command
    fired = asyncio.Event()

    async def send(self: Any, command: Any) -> None:
        await real(self, command)
        chunks = [command] if isinstance(command, bytes) else list(command)
        sent = b"".join(chunks)
        if not fired.is_set() and all(part in sent for part in marker):
            fired.set()
            asyncio.get_running_loop().call_soon(victim.cancel)

    monkeypatch.setattr(AbstractConnection, "_send_packed_command", send)
    return fired


def task_of(gw: Any, qualname: str) -> asyncio.Task[Any]:
    return next(t for t in gw._tasks if t.get_coro().__qualname__ == qualname)


@pytest.mark.parametrize(("loop", "marker"), [
    ("Feed.run", (b"XREAD", b"{match}")),          # the blocking read of the match's streams
    ("FlagFeed.run", (b"XREAD", FLAGS_LOG_KEY.encode())),  # the read of the flag changes
    ("Feed.watch_positions", (b"EXISTS",)),        # the once-a-second position check
    ("WatchingRelay.run", (b"XREVRANGE", b"{match}")),  # the "N watching" read
], ids=["Feed.run", "FlagFeed.run", "Feed.watch_positions", "WatchingRelay.run"])
async def test_a_loop_cancelled_as_its_redis_command_is_sent_ends(
        gateway, writer, match_id, monkeypatch, loop, marker):
    await writer.publish(match_id, card(1))
    peer = await connect(gateway.port)
    await peer.subscribe(f"match:{match_id}")
    await peer.subscribe(f"notes:{match_id}", req_id=2)
    await peer.subscribe("flags", req_id=3)
    victim = task_of(gateway, loop)
    marker = tuple(part.replace(b"{match}", match_id.encode()) for part in marker)
    fired = cancel_at_send(monkeypatch, marker, victim)
    await asyncio.wait_for(fired.wait(), 5)
    await asyncio.wait([victim], timeout=3)  # one blocking read (<= 1 s); the old code: never
    try:
        assert victim.done(), f"{loop} ran on after its cancellation"
        assert victim.cancelled()
    finally:
        await peer.close()


async def test_sigterm_stops_a_gateway_with_blocked_reads_within_2_s(
        settings, writer, match_id, tmp_path):
    """The whole path: a real `stumpcast gateway serve --workers 2`, clients subscribed (the
    feed's and the flags' XREADs blocked in Redis, updates flowing), SIGTERM: every worker
    stops within 2 s and none logs a task left behind."""
    from tests.gateway.test_liveness import free_port

    await writer.publish(match_id, card(1))
    port = free_port()
    env = {**os.environ, "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()),
           "STUMPCAST_GATEWAY_STATS_DIR": str(tmp_path), "STUMPCAST_LOG_LEVEL": "WARNING"}
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stumpcast", "gateway", "serve",
                                 "--workers", "2", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        peers = await _subscribed(proc, tmp_path, port, match_id)
        for seq in range(2, 12):  # updates in flight: the feed is reading and sending
            await writer.publish(match_id, card(seq))
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None and time.monotonic() - start < 10:
            await asyncio.sleep(0.02)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = log.read_text()
    assert "still running" not in text and "did not close" not in text, text[-2000:]
    assert proc.returncode == 0 and took < 2.0, f"exit {proc.returncode} after {took:.2f} s"
    for peer in peers:
        await peer.close()


async def _subscribed(proc: subprocess.Popen[bytes], stats: Any, port: int,
                      match_id: str) -> list[Any]:
    """Clients of both workers, each on the match, its notes and the flags."""
    deadline = time.monotonic() + 30
    while len(list(stats.glob("worker-*.json"))) < 2:  # both listening: connect only then
        assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
        await asyncio.sleep(0.1)
    peers = [await connect(port) for _ in range(6)]
    for peer in peers:
        await peer.subscribe(f"match:{match_id}")
        await peer.subscribe(f"notes:{match_id}", req_id=2)
        await peer.subscribe("flags", req_id=3)
    await asyncio.sleep(0.5)  # every XREAD blocked in Redis
    return peers
