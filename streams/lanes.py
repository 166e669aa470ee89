"""Matches side by side: one lane (an asyncio task and queue) per match with work queued.

Events of one match stay in order in their lane; lanes of different matches overlap their
round trips to Redis and Kafka, so a worker is not bound by one round trip per event. The
number of events in flight is bounded (backpressure on the consumer): a lane that waits for a
dependency (``streams.errors``: the engine retries the same step) keeps its slots, so a long
outage stops the consumer instead of filling memory.

A revoked partition's queued events are dropped (not acked: the new owner re-reads them). A
lane never dies silently: whatever escapes the engine is logged, the event stays unacked, its
slot is released and the lane carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from schemas.events import Event
from streams.engine import Ack, Engine

log = logging.getLogger(__name__)

Queued = tuple[Event, bytes, Ack, int]  # event, its bytes, its ack, its partition


class Lanes:
    def __init__(self, engine: Engine, max_in_flight: int = 2000) -> None:
        self.engine = engine
        self._slots = asyncio.Semaphore(max_in_flight)
        self._lanes: dict[str, deque[Queued]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, raw: bytes, ack: Ack = None, partition: int = 0) -> None:
        """Queue one message (from ``partition`` of ``match.events``); waits while
        ``max_in_flight`` events are unfinished."""
        event = await self.engine.admit(raw, ack, partition)
        if event is None:
            return
        await self._slots.acquire()
        if not self.engine.owner.generation(partition):  # revoked while waiting for a slot
            self._slots.release()
            return
        lane = self._lanes.get(event.match_id)
        if lane is None:
            lane = self._lanes[event.match_id] = deque()
            task = asyncio.create_task(self._drive(event.match_id, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        lane.append((event, raw, ack, partition))

    def revoke(self, partitions: Iterable[int]) -> int:
        """Drop the queued events of ``partitions`` (unacked); returns how many."""
        ps, dropped = set(partitions), 0
        for lane in self._lanes.values():
            keep = [q for q in lane if q[3] not in ps]
            dropped += len(lane) - len(keep)
            lane.clear()
            lane.extend(keep)
        for _ in range(dropped):
            self._slots.release()
        return dropped

    def queued(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    async def idle(self) -> None:
        """Wait until every lane is empty (tests, shutdown)."""
        while self._lanes:
            await asyncio.sleep(0.005)

    async def _drive(self, match_id: str, lane: deque[Queued]) -> None:
        try:
            while lane:
                event, raw, ack, partition = lane.popleft()
                try:
                    await self.engine.handle_event(event, raw, ack, partition)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the engine's own handling failed: keep the lane alive
                    log.exception("event not handled: it stays unacknowledged",
                                  extra={"match_id": event.match_id, "seq": event.seq})
                finally:
                    self._slots.release()
        finally:
            if self._lanes.get(match_id) is lane:  # no await since the check: nothing queued
                del self._lanes[match_id]
