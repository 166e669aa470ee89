"""Which partitions of ``match.events`` this worker holds, and the order its acks go out in.

Principle 13 (STYLE.md): state belongs to an assignment. ``Ownership`` gives each assigned
partition a fresh *generation*; whatever the engine does for an event (fold, view commit,
notifications, the ack) carries the generation it started under and is abandoned when the
partition was revoked (or revoked and assigned again) since. Pure: no faust, no asyncio.

``OrderedAcks`` releases the acks of one partition's messages in offset order. faust commits
the offset after the first run of consecutive acked offsets, but lets one un-acked offset at
the head through (``min(acked) - committed > 1`` in ``Consumer._new_offset``; faust-streaming
issue #606, fix proposed in PR #707): with matches acked out of order (a note waiting for its
transaction, an event waiting for Cassandra), a kill then lost the un-acked event. Releasing
acks in order makes faust's acked list one run from the committed offset, so the committed
offset never passes a message whose effects are not all done. A tracker is closed on revoke:
a late ack of an earlier assignment then does nothing (the new owner re-reads that message).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Ownership:
    """Partitions held, each with the generation of its assignment.

    ``Ownership(None)`` (a standalone engine: tests, benches) takes a partition on first sight;
    ``Ownership(())`` (the faust worker) holds only what ``assign`` gave it.
    """

    def __init__(self, partitions: Iterable[int] | None = None) -> None:
        self.standalone = partitions is None
        self._held: dict[int, int] = {}  # partition -> generation
        self._last = 0
        self.assign(partitions or ())

    def assign(self, partitions: Iterable[int]) -> None:
        """A new assignment: every listed partition gets a new generation."""
        for p in partitions:
            self._last += 1
            self._held[p] = self._last

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._held.pop(p, None)

    def generation(self, partition: int) -> int | None:
        """The partition's generation, ``None`` when this worker does not hold it."""
        if self.standalone and partition not in self._held:
            self.assign([partition])
        return self._held.get(partition)

    def current(self, partition: int, generation: int | None) -> bool:
        """Still held under the same assignment."""
        return generation is not None and self._held.get(partition) == generation

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._held)


class OrderedAcks(Generic[T]):
    """One partition's messages in the order they were taken; ``done`` returns the ones whose
    ack may go to the consumer now: a message only once every earlier one is done."""

    def __init__(self, resume_at: int | None = None) -> None:
        """``resume_at``: the partition was just sought back to this offset; messages above
        it that arrive first are stale copies (already buffered) and are skipped."""
        self._order: deque[int] = deque()
        self._items: dict[int, tuple[T, bool]] = {}
        self.closed = False
        self._resume_at = resume_at

    def __len__(self) -> int:
        return len(self._order)

    def accept(self, offset: int) -> bool:
        """Whether to take this message (False: a stale copy from before a seek)."""
        if self._resume_at is not None:
            if offset > self._resume_at:
                return False
            self._resume_at = None
        return True

    def head(self) -> int | None:
        """The oldest offset whose ack has not gone out."""
        return self._order[0] if self._order else None

    def take(self, offset: int, item: T) -> None:
        if offset in self._items:  # seen again (re-delivered): the first one is awaited
            return
        self._order.append(offset)
        self._items[offset] = (item, False)

    def done(self, offset: int) -> list[T]:
        if self.closed or offset not in self._items:
            return []
        self._items[offset] = (self._items[offset][0], True)
        out: list[T] = []
        while self._order and self._items[self._order[0]][1]:
            out.append(self._items.pop(self._order.popleft())[0])
        return out

    def close(self) -> None:
        """Revoked: nothing taken under this assignment will be acked any more."""
        self.closed = True
        self._order.clear()
        self._items.clear()
