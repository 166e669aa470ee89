"""Which offsets of ``match.notifications`` may be committed: the lowest one still in work.

A message is in work until each of its deliveries is finished (delivered, skipped, dead-lettered
or dropped by the spoiler hold). Committing the lowest unfinished offset means a restarted
notifier re-reads only what might not have gone out; ids recorded in Redis absorb the rest.
"""

from __future__ import annotations


class OffsetTracker:
    def __init__(self) -> None:
        self.open: dict[int, dict[int, int]] = {}   # partition -> offset -> jobs left
        self.next: dict[int, int] = {}              # partition -> offset after the newest seen

    def add(self, partition: int, offset: int, jobs: int) -> None:
        self.next[partition] = max(self.next.get(partition, 0), offset + 1)
        if jobs > 0:
            self.open.setdefault(partition, {})[offset] = jobs

    def done(self, partition: int, offset: int) -> None:
        jobs = self.open.get(partition, {})
        if offset in jobs:
            jobs[offset] -= 1
            if jobs[offset] <= 0:
                del jobs[offset]

    def committable(self) -> dict[int, int]:
        return {p: min(self.open.get(p) or {nxt: 0}) for p, nxt in self.next.items()}

    def forget(self, partition: int) -> None:
        self.open.pop(partition, None)
        self.next.pop(partition, None)

    def in_work(self) -> int:
        return sum(len(v) for v in self.open.values())
