"""Relays the analytics worker's "N watching" counter to a match's scorecard subscribers.

The analytics worker appends ``schemas.heartbeats.Watching`` records to the stream
``RedisKeys.watching(match_id)`` (at most one a second, only on a change). Once a tick this
relay reads the newest entry of every match that has subscribers in this process, all in one
pipelined round trip, and hands the record's bytes, unchanged, to every subscriber of
``match:{id}`` (encode once). The counter is informational: it carries no position and is not
part of the scorecard's sequence, so a client that misses one simply shows the next. A record
is sent when it changes, and again every ``REPEAT`` ticks so that new subscribers see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from gateway.flags import FlagFeed, p2_shed
from gateway.hub import Hub, text_frame
from runtime.eventloop import raise_if_cancelled
from schemas.protocol import MATCH
from schemas.topology import RedisKeys
from schemas.view import UPDATE_FIELD

PREFIX = f"{MATCH}:"
REPEAT = 5
SLICE = 256  # clients per fan-out slice (~2-4 ms of socket writes on the 2-core VM)


class WatchingRelay:
    def __init__(self, redis: Any, hub: Hub, interval: float = 1.0,
                 flags: FlagFeed | None = None) -> None:
        self.redis = redis
        self.flags = flags  # "watching" is P2: not sent where its flag is off, nor while shed
        self.hub = hub
        self.interval = interval
        self._last: dict[str, tuple[bytes, int]] = {}  # channel -> (entry id, ticks since sent)
        self.sent = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):  # Redis trouble: the feed reports it; skip a tick
                await self.tick()
            raise_if_cancelled()  # a stop's cancel lost in redis-py's send (runtime.eventloop)

    async def tick(self) -> None:
        # Read even while P2 is shed: the counts it would have sent are the offered P2 load
        # the degradation controller holds its level on (``runtime.degrade``); one pipelined
        # read a second is cheap, the fan-out is what shedding saves.
        channels = [key for key in self.hub.channels if key.startswith(PREFIX)]
        for gone in set(self._last) - set(channels):
            del self._last[gone]
        if not channels:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in channels:
            pipe.xrevrange(RedisKeys.watching(key[len(PREFIX):]), count=1)
        replies = await pipe.execute()
        now = time.monotonic()
        for key, rows in zip(channels, replies, strict=True):
            if rows and self._due(key, _as_bytes(rows[0][0])):
                self.hub.stats.p2_offered += self.hub.subscribers(key)
                if not (self.flags is not None and self.flags.shed_p2):
                    await self._fan_out(key, _field(rows[0][1]), now)

    def _due(self, key: str, entry_id: bytes) -> bool:
        last_id, ticks = self._last.get(key, (b"", REPEAT))
        if last_id == entry_id and ticks + 1 < REPEAT:
            self._last[key] = (last_id, ticks + 1)
            return False
        self._last[key] = (entry_id, 0)
        return True

    async def _fan_out(self, key: str, payload: bytes | None, now: float) -> None:
        """Framed once; sent in slices of ``SLICE`` clients with a yield between them, so a
        score update (P1) that arrives meanwhile is not queued behind the whole audience."""
        if payload is None:
            return
        frame = text_frame(payload)
        clients = list(self.hub.channels.get(key, {}))
        for start in range(0, len(clients), SLICE):
            if start:
                await asyncio.sleep(0)
            for client in clients[start:start + SLICE]:
                if client.closed or p2_shed(self.flags, client, "watching"):
                    continue  # the level may have risen during the yield
                self.hub.send_framed(client, frame, 1, now)
                self.sent += 1
                self.hub.stats.p2_sent += 1


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _field(fields: Any) -> bytes | None:
    raw = fields.get(UPDATE_FIELD.encode(), fields.get(UPDATE_FIELD))
    return _as_bytes(raw) if raw is not None else None
