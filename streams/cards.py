"""Latest cards to the compacted ``match.scorecards`` topic, conflated, with gated acks.

The topic keeps the latest card per match, so sending every intermediate card (5-10 KB each)
would only cost the worker CPU. ``CardPublisher`` keeps the newest card per match and a timer
sends what changed (latest wins). An input event's Kafka ack is held here until a card at or
past its seq has been acknowledged by the broker: a worker killed between the store write and
the card send re-reads the event, so the final card always reaches the topic.

A card whose send fails (Kafka down) stays for the next flush unless a newer one replaced it,
and the acks it covers keep waiting. Held acks are bounded: ``room()`` waits while
``max_waiting`` are held (the engine calls it before taking an event, so consumption pauses).
The cards and acks of matches whose partition was revoked are dropped (``forget``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

Send = Callable[[str, bytes], Awaitable[None]]


class CardPublisher:
    def __init__(self, send: Send, max_waiting: int = 20_000) -> None:
        self._send = send
        self._dirty: dict[str, tuple[int, bytes]] = {}
        self._flushed: dict[str, int] = {}
        self._waiting: dict[str, list[tuple[int, Callable[[], Any]]]] = {}
        self._lock = asyncio.Lock()
        self._max_waiting = max_waiting
        self._held = 0
        self._freed = asyncio.Event()
        self.failing = False  # the last flush could not send everything

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
        self._held += 1
        return None

    def held(self) -> int:
        """Acks waiting for a card."""
        return self._held

    async def room(self) -> None:
        """Wait while ``max_waiting`` acks are held (the broker does not take cards)."""
        while self._held >= self._max_waiting:
            self._freed.clear()
            await self._freed.wait()

    def forget(self, match_ids: Iterable[str]) -> None:
        """The matches' partitions were revoked: their cards and held acks are not ours."""
        for m in match_ids:
            self._dirty.pop(m, None)
            self._flushed.pop(m, None)
            self._held -= len(self._waiting.pop(m, []))
        self._freed.set()

    async def flush(self) -> int:
        """Send the newest card of every match that changed; release the acks it covers. A
        card that could not be sent is kept for the next flush. Returns the cards sent."""
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            if not dirty:
                return 0
            results = await asyncio.gather(*(self._send(m, card) for m, (_, card) in dirty.items()),
                                           return_exceptions=True)
            sent = 0
            for (m, (seq, card)), result in zip(dirty.items(), results, strict=True):
                if isinstance(result, BaseException):
                    self._dirty.setdefault(m, (seq, card))  # unless a newer card came meanwhile
                    continue
                sent += 1
                self._flushed[m] = max(seq, self._flushed.get(m, 0))
                await self._release(m)
            self._report(len(dirty) - sent, results)
            return sent

    def _report(self, unsent: int, results: list[Any]) -> None:
        if unsent and not self.failing:
            error = next(r for r in results if isinstance(r, BaseException))
            log.warning("scorecards not sent, kept for the next flush",
                        extra={"unsent": unsent, "error": f"{type(error).__name__}: {error}"})
        elif not unsent and self.failing:
            log.warning("scorecards sent again")
        self.failing = bool(unsent)

    async def _release(self, match_id: str) -> None:
        done = self._flushed[match_id]
        waiting = self._waiting.pop(match_id, [])
        keep = [(s, a) for s, a in waiting if s > done]
        if keep:
            self._waiting[match_id] = keep
        self._held -= len(waiting) - len(keep)
        self._freed.set()
        for s, ack in waiting:
            if s <= done:
                try:
                    result = ack()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:  # one ack must not keep the others
                    log.exception("ack after a card failed", extra={"match_id": match_id})
