"""Matches side by side: one lane (an asyncio task and queue) per match with work queued.

Events of one match stay in order in their lane; lanes of different matches overlap their
round trips to Redis and Kafka, so a worker is not bound by one round trip per event. The
number of events in flight is bounded (backpressure on the consumer). A Redis outage is waited
out, retrying the same event; an unexpected error is logged and the event dead-lettered, so a
lane never dies silently.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from schemas.deadletter import Reason
from schemas.events import Event
from streams.engine import Ack, Engine
from streams.pipeline import reject
from streams.viewstore import ViewStoreError

log = logging.getLogger(__name__)

Queued = tuple[Event, bytes, Ack, int]  # event, its bytes, its ack, its partition


class Lanes:
    def __init__(self, engine: Engine, max_in_flight: int = 2000) -> None:
        self.engine = engine
        self._slots = asyncio.Semaphore(max_in_flight)
        self._lanes: dict[str, asyncio.Queue[Queued]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, raw: bytes, ack: Ack = None, partition: int = 0) -> None:
        """Queue one message (from ``partition`` of ``match.events``); waits while
        ``max_in_flight`` events are unfinished."""
        event = await self.engine.admit(raw, ack)
        if event is None:
            return
        await self._slots.acquire()
        lane = self._lanes.get(event.match_id)
        if lane is None:
            lane = self._lanes[event.match_id] = asyncio.Queue()
            task = asyncio.create_task(self._drive(event.match_id, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        lane.put_nowait((event, raw, ack, partition))

    async def idle(self) -> None:
        """Wait until every lane is empty (tests, shutdown)."""
        while self._lanes:
            await asyncio.sleep(0.005)

    async def _drive(self, match_id: str, lane: asyncio.Queue[Queued]) -> None:
        while not lane.empty():
            event, raw, ack, partition = lane.get_nowait()
            try:
                await self._one(event, raw, ack, partition)
            finally:
                self._slots.release()
        del self._lanes[match_id]  # no await since the check: nothing was queued meanwhile

    async def _one(self, event: Event, raw: bytes, ack: Ack, partition: int) -> None:
        delay = 0.05
        while True:
            try:
                await self.engine.handle_event(event, raw, ack, partition)
                return
            except ViewStoreError as exc:
                log.warning("redis unreachable, retrying", extra={"error": str(exc),
                                                                 "match_id": event.match_id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a bug must not wedge the match or lose the event
                log.exception("event failed", extra={"match_id": event.match_id,
                                                     "seq": event.seq})
                detail = f"{type(exc).__name__}: {exc}"
                await self._dead_letter(event, raw, ack, detail)
                return

    async def _dead_letter(self, event: Event, raw: bytes, ack: Any, detail: str) -> None:
        self.engine.matches.pop(event.match_id, None)  # recovered afresh on next sight
        await self.engine._run([reject(event, raw, ack, Reason.INTERNAL, detail)])
