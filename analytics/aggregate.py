"""One analytics worker's partitions, folded and flushed together: still pure (no I/O, no clock).

``Aggregator.flush(now_ms)`` returns a ``FlushPlan``, which the shell carries out:

* ``finals``: for each (match, window) some partition has closed, one partial per partition of
  this worker that is past the window (empty if it had none of the match's sessions: with
  sessions keyed to partitions, a partition that closed a window without the match had none);
  the Redis merge adds partials of all partitions and calls the window complete when every
  partition of the topic has reported;
* ``live``: the newest window (the last 2 intervals up to the newest beat this worker has seen),
  match totals only, one partial per assigned partition: the "N watching" counter;
* ``sessions``: per match, sessions that may be new since the last flush (views: SADD or
  PFADD; exact mode leaves out sessions already in the previous bucket, hll mode sends all);
* ``playheads``: the newest playhead PDT of each watched session (no-spoiler webhooks);
* ``commits``: per partition, the offset a restarted consumer must resume from to rebuild its
  open windows exactly, and the first window still open (stored as the commit's metadata, so
  a beat re-read for an already reported window is dropped, not reported twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from analytics.window import NEVER, Group, PartitionWindows, Stats, WindowSpec
from schemas.heartbeats import Heartbeat

Parts = dict[int, dict[Group, Stats]]


@dataclass(frozen=True)
class Partial:
    match_id: str
    start_ms: int
    end_ms: int
    final: bool
    parts: Parts


@dataclass
class FlushPlan:
    finals: list[Partial] = field(default_factory=list)
    live: list[Partial] = field(default_factory=list)
    sessions: dict[str, set[str]] = field(default_factory=dict)
    commits: dict[int, tuple[int, int]] = field(default_factory=dict)
    playheads: dict[str, int] = field(default_factory=dict)
    late: int = 0


class Aggregator:
    def __init__(self, spec: WindowSpec, idle_ms: int = 3_000) -> None:
        self.spec = spec
        self.idle_ms = idle_ms
        self.cores: dict[int, PartitionWindows] = {}
        self.last_busy: dict[int, int] = {}   # data folded, known behind, or assigned (wall ms)
        self.pending: dict[tuple[str, int], set[int]] = {}   # (match, k) -> reported by
        self.closed_through: dict[int, int] = {}
        self.seen: dict[str, set[str]] = {}
        self.watched: frozenset[str] = frozenset()   # sessions whose playhead is wanted
        self.playheads: dict[str, int] = {}
        self.late = 0

    def assign(self, partition: int, closed_before: int | None, now_ms: int) -> None:
        self.cores[partition] = PartitionWindows(self.spec, closed_before)
        self.last_busy[partition] = now_ms
        if closed_before is not None:
            self.closed_through[partition] = closed_before - 1

    def revoke(self, partition: int) -> None:
        for d in (self.cores, self.last_busy, self.closed_through):
            d.pop(partition, None)
        for reported in self.pending.values():
            reported.discard(partition)

    def fold(self, partition: int, beats: list[tuple[int, Heartbeat]], now_ms: int) -> None:
        if not beats:
            return
        self.late += self.cores[partition].fold(beats)
        self.last_busy[partition] = now_ms
        watched = self.watched
        if watched:
            for _, hb in beats:
                if hb.session_id in watched:
                    self.playheads[hb.session_id] = max(hb.playhead_ms,
                                                        self.playheads.get(hb.session_id, 0))

    def fold_each(self, partition: int, beats: list[tuple[int, Heartbeat]],
                  now_ms: int) -> list[tuple[int, Exception]]:
        """``fold``, with a beat that raises skipped: returns each skipped (offset, error).

        Decoding already checked every beat, so an error here is a bug; skipping the one beat
        lets the partition carry on (the shell logs each with its traceback). The beats before
        it are folded (the core's ``next_offset`` says how far it got); a beat whose error
        came half-way through its own update may have counted in some of its groups.
        """
        failed: list[tuple[int, Exception]] = []
        rest = beats
        while rest:
            try:
                self.fold(partition, rest, now_ms)
                break
            except Exception as exc:
                core = self.cores[partition]
                i = next((i for i, (off, _) in enumerate(rest) if off >= core.next_offset), 0)
                failed.append((rest[i][0], exc))
                core.next_offset = rest[i][0] + 1
                rest = rest[i + 1:]
        return failed

    def idle_candidates(self, now_ms: int) -> list[int]:
        """Partitions quiet for ``idle_ms``: the shell must find out whether they are caught up
        (at the log end as the broker says now) before ``flush`` may call them idle."""
        return [p for p, t in self.last_busy.items() if now_ms - t >= self.idle_ms]

    def flush(self, now_ms: int, caught_up: set[int] | None = None) -> FlushPlan:
        """``caught_up``: partitions known to have nothing left to read (None: all). Only those
        may be idle. A quiet partition that is behind, or whose position is unknown (slow to
        deliver its first records, or starved by a backlog elsewhere), is busy: its idle time
        counts again from now, from when it was last known to be behind."""
        for p in self.idle_candidates(now_ms):
            if caught_up is None or p in caught_up:
                self.cores[p].advance(now_ms - self.idle_ms - self.spec.lateness_ms)
            else:
                self.last_busy[p] = now_ms
        for core in self.cores.values():
            for m, fresh in core.drain_fresh().items():
                self.seen.setdefault(m, set()).update(fresh)
        plan = FlushPlan(finals=self._finals(), live=self._live(), sessions=self.seen,
                         playheads=self.playheads, late=self.late)
        self.seen, self.playheads, self.late = {}, {}, 0
        for p, core in self.cores.items():
            plan.commits[p] = (core.commit_offset(), core.closed_before or NEVER)
        return plan

    # -- finals --------------------------------------------------------------------------
    def _finals(self) -> list[Partial]:
        out: dict[tuple[str, int], Parts] = {}
        for p, core in self.cores.items():
            for k in core.closable():
                for m in core.matches(k):
                    out.setdefault((m, k), {})[p] = core.stats(k, m)
                    self.pending.setdefault((m, k), set()).add(p)
                self.closed_through[p] = k
                core.evict_through(k)
        for (m, k), reported in list(self.pending.items()):
            for p in self.cores:
                if p not in reported and self.closed_through.get(p, NEVER) >= k:
                    out.setdefault((m, k), {})[p] = {}
                    reported.add(p)
            if reported >= self.cores.keys():
                del self.pending[(m, k)]
        return [Partial(m, self.spec.start_ms(k), self.spec.end_ms(k), True, parts)
                for (m, k), parts in sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0]))]

    # -- live ----------------------------------------------------------------------------
    def _live(self) -> list[Partial]:
        newest = max((c.max_ts for c in self.cores.values()), default=NEVER)
        if newest == NEVER:
            return []
        k = newest // self.spec.step_ms - self.spec.size_steps + 1
        if any((c.closed_before or NEVER) > k for c in self.cores.values()):
            return []  # already final (an idle partition's floor passed it): finals cover it
        matches = set().union(*(c.matches(k) for c in self.cores.values()))
        out = []
        for m in sorted(matches):
            parts: Parts = {p: c.stats(k, m, groups=False) for p, c in self.cores.items()}
            out.append(Partial(m, self.spec.start_ms(k), self.spec.end_ms(k), False, parts))
        return out


def merge(parts: Iterable[dict[Group, Stats]]) -> dict[Group, Stats]:
    """Sum partials of disjoint partitions (what the Redis merge does, for tests and tools)."""
    out: dict[Group, Stats] = {}
    for part in parts:
        for g, s in part.items():
            out[g] = out.get(g, Stats()) + s
    return out
