"""Latest cards to the compacted ``match.scorecards`` topic, conflated, with gated acks.

The topic keeps the latest card per match, so sending every intermediate card (5-10 KB each)
would only cost the worker CPU. ``CardPublisher`` keeps the newest card per match and a timer
sends what changed (latest wins). An input event's Kafka ack is held here until a card at or
past its seq has been acknowledged by the broker: a worker killed between the store write and
the card send re-reads the event, so the final card always reaches the topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[str, bytes], Awaitable[None]]


class CardPublisher:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._dirty: dict[str, tuple[int, bytes]] = {}
        self._flushed: dict[str, int] = {}
        self._waiting: dict[str, list[tuple[int, Callable[[], Any]]]] = {}
        self._lock = asyncio.Lock()

    def update(self, match_id: str, seq: int, card: bytes) -> None:
        self._dirty[match_id] = (seq, card)

    def gate(self, match_id: str, seq: int, ack: Callable[[], Any] | None) -> Any:
        """Run ``ack`` now if the card at ``seq`` is out, else once it is (returns its
        result, which may be awaitable)."""
        if ack is None:
            return None
        if self._flushed.get(match_id, 0) >= seq:
            return ack()
        self._waiting.setdefault(match_id, []).append((seq, ack))
        return None

    async def flush(self) -> int:
        """Send the newest card of every match that changed; release the acks it covers."""
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            if not dirty:
                return 0
            await asyncio.gather(*(self._send(m, card) for m, (_, card) in dirty.items()))
            for m, (seq, _) in dirty.items():
                self._flushed[m] = max(seq, self._flushed.get(m, 0))
                await self._release(m)
            return len(dirty)

    async def _release(self, match_id: str) -> None:
        done = self._flushed[match_id]
        waiting = self._waiting.pop(match_id, [])
        keep = [(s, a) for s, a in waiting if s > done]
        if keep:
            self._waiting[match_id] = keep
        for s, ack in waiting:
            if s <= done:
                result = ack()
                if asyncio.iscoroutine(result):
                    await result
