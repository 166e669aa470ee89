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

    def add(self, partition: int, offset: int, jobs: int) -> bool:
        """Track a message with ``jobs`` deliveries to do; False (and nothing changes) if it is
        in work already: a repeated fetch must not reset the count of its jobs."""
        if offset in self.open.get(partition, {}):
            return False
        self.next[partition] = max(self.next.get(partition, 0), offset + 1)
        if jobs > 0:
            self.open.setdefault(partition, {})[offset] = jobs
        return True

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


class Ownership:
    """The partitions this process owns now, each under a generation of its own (STYLE.md 13).

    A job carries the generation its message was read under. Once its partition is revoked
    (or revoked and assigned again) the job is not this process's any more: the partition's
    owner re-reads the message from the committed offset, so the stale job is dropped, never
    delivered twice or counted against the new read's offsets.
    """

    def __init__(self) -> None:
        self.gens: dict[int, int] = {}
        self.counter = 0

    def assign(self, partitions: set[int]) -> None:
        for p in sorted(partitions):
            self.counter += 1
            self.gens[p] = self.counter

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self.gens.pop(p, None)

    def generation(self, partition: int) -> int | None:
        return self.gens.get(partition)

    def owns(self, partition: int, generation: int | None) -> bool:
        return generation is not None and self.gens.get(partition) == generation
