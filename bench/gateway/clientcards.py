"""The card each load client holds (``stumpcast chaos``), built from the bytes it received.

Moved out of ``loadclient`` (which uses it) to keep that module to the clients themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


class Cards:
    """The card each client holds (``stumpcast chaos``), built from the bytes it received: the
    last snapshot, then each update's patch (or card) applied in order, as a viewer's app
    does. ``patch.apply`` is pure, so two clients holding the same card that receive the same
    bytes hold the same card after: each step is computed once per process and shared by id,
    while every client still follows its own chain (one that skipped, doubled or misapplied an
    update ends on another card). State 0 is "no card" (none yet, or a gap broke it)."""

    __slots__ = ("cards", "snapshots", "steps")

    def __init__(self) -> None:
        self.cards: list[Any] = [None]
        self.snapshots: dict[bytes, int] = {}
        self.steps: dict[tuple[int, bytes], int] = {}

    def snapshot(self, payload: bytes) -> int:
        state = self.snapshots.get(payload)
        if state is None:
            state = self.snapshots[payload] = self._new(orjson.loads(payload)["card"])
        return state

    def step(self, state: int, payload: bytes) -> int:
        """The card after ``payload`` (an update) is applied to card ``state``."""
        if not state:
            return 0
        nxt = self.steps.get((state, payload))
        if nxt is None:
            from schemas import patch

            msg = orjson.loads(payload)
            try:
                card = msg["card"] if "card" in msg else patch.apply(self.cards[state],
                                                                     msg["patch"])
            except patch.PatchError:
                nxt = 0
            else:
                nxt = self._new(card)
            self.steps[(state, payload)] = nxt
        return nxt

    def _new(self, card: Any) -> int:
        self.cards.append(card)
        return len(self.cards) - 1

    def held(self, conns: Iterable[Any]) -> list[tuple[str, Any, int]]:
        """(match, card, clients holding it) for each distinct card the clients hold
        (``loadclient.Conn``: ``match`` and ``card``)."""
        count: dict[tuple[str, int], int] = {}
        for c in conns:
            count[(c.match, c.card)] = count.get((c.match, c.card), 0) + 1
        return [(m, self.cards[state], n) for (m, state), n in count.items()]
