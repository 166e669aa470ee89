"""The "no spoilers" hold: a notification waits until the viewer's video has shown its ball.

OTT video runs 15-45 s behind live while the data feed is 1-5 s behind, so a push can tell the
viewer what the video has not shown yet (industry.md §1d, §5). A subscriber with ``no_spoilers``
names its player session; the session's playhead PDT (from its heartbeats or its client) moves
forward, and a held notification is released once ``playhead >= ball ts``. A hold older than
``max_hold_ms`` (the viewer left, or the player stopped beating) is dropped, not sent: a late
spoiler is still a spoiler. A retraction of a held notification cancels it silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.notifications import Notification


@dataclass(frozen=True)
class Held:
    subscription_id: str
    session_id: str
    note: Notification
    raw: bytes
    ball_ms: int
    since_ms: int
    ref: tuple[int, int] = (-1, -1)   # (partition, offset) of the Kafka message, for commits


@dataclass
class SpoilerHold:
    max_hold_ms: int = 15 * 60 * 1000
    held: dict[str, list[Held]] = field(default_factory=dict)   # subscription -> in order

    def hold(self, item: Held) -> None:
        self.held.setdefault(item.subscription_id, []).append(item)

    def sessions(self) -> set[str]:
        return {h.session_id for items in self.held.values() for h in items}

    def retract(self, subscription_id: str, notification_id: str) -> Held | None:
        items = self.held.get(subscription_id, [])
        for i, h in enumerate(items):
            if h.note.id == notification_id:
                return items.pop(i)
        return None

    def release(self, playheads: Mapping[str, int | None],
                now_ms: int) -> tuple[list[Held], list[Held]]:
        """(released in ball order per subscriber, expired). ``playheads``: session -> PDT ms."""
        released: list[Held] = []
        expired: list[Held] = []
        for sub, items in list(self.held.items()):
            keep = []
            for h in items:
                playhead = playheads.get(h.session_id)
                if playhead is not None and playhead >= h.ball_ms:
                    released.append(h)
                elif now_ms - h.since_ms > self.max_hold_ms:
                    expired.append(h)
                else:
                    keep.append(h)
            if keep:
                self.held[sub] = keep
            else:
                del self.held[sub]
        return released, expired

    def drop(self, partitions: set[int] | None = None,
             subscription_id: str | None = None) -> list[Held]:
        """Take out what came from ``partitions`` (revoked: their new owner holds them again)
        or belongs to ``subscription_id`` (removed); returns what was taken out."""
        out: list[Held] = []
        for sub, items in list(self.held.items()):
            keep: list[Held] = []
            for h in items:
                gone = (partitions is not None and h.ref[0] in partitions) or \
                    (subscription_id is not None and sub == subscription_id)
                (out if gone else keep).append(h)
            if keep:
                self.held[sub] = keep
            else:
                del self.held[sub]
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.held.values())
