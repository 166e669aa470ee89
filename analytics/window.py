"""Concurrency windows of one partition of ``viewer.heartbeats``: the pure core.

Event time is cut into buckets of one heartbeat interval (``step_ms``). Window ``k`` covers
buckets ``k .. k+size_steps-1`` (2 intervals by default: clients double-send on context
changes, so a distinct count over 2x the interval is the standard heartbeat CCU; industry.md
§7), starts at ``k*step_ms`` and is final once the partition's watermark (newest beat minus
``lateness_ms``) passes its end. A beat for a bucket that only closed windows cover is late:
dropped and counted. Per window, per match, per (region, CDN) and for the match ("*", "*"):

* ``sessions``: distinct sessions (a set in exact mode, a HyperLogLog in hll mode);
* ``beats``, ``bitrate_sum`` (kbps): average bitrate = bitrate_sum / beats;
* ``buffering_ms``: rebuffering ratio = buffering_ms / (beats x step_ms), i.e. stalled time
  over the viewing time the beats stand for.

Sessions are keyed to partitions, so partials of different partitions add up exactly. The state
is mutable for speed (50k+ beats/s) but the core does no I/O and reads no clock: time comes in
with the beats and with ``advance``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from analytics.hll import HyperLogLog
from schemas.heartbeats import ALL, Heartbeat

Group = tuple[str, str]          # (region, cdn); (ALL, ALL) is the match total
TOTAL: Group = (ALL, ALL)
NEVER = -(2**62)


@dataclass(frozen=True)
class WindowSpec:
    step_ms: int = 10_000
    size_steps: int = 2
    lateness_ms: int = 2_000
    mode: str = "exact"          # "exact" | "hll"
    hll_precision: int = 14

    def __post_init__(self) -> None:
        if self.step_ms < 1 or self.size_steps < 1 or self.lateness_ms < 0:
            raise ValueError("step_ms and size_steps must be >= 1, lateness_ms >= 0")
        if self.mode not in ("exact", "hll"):
            raise ValueError("mode must be 'exact' or 'hll'")

    def start_ms(self, k: int) -> int:
        return k * self.step_ms

    def end_ms(self, k: int) -> int:
        return (k + self.size_steps) * self.step_ms


@dataclass(frozen=True, slots=True)
class Stats:
    """One group's figures in one window of one partition (or summed over partitions)."""

    sessions: int = 0
    beats: int = 0
    bitrate_sum: int = 0
    buffering_ms: int = 0

    def __add__(self, other: Stats) -> Stats:
        return Stats(self.sessions + other.sessions, self.beats + other.beats,
                     self.bitrate_sum + other.bitrate_sum, self.buffering_ms + other.buffering_ms)

    def as_list(self) -> list[int]:
        return [self.sessions, self.beats, self.bitrate_sum, self.buffering_ms]

    def avg_bitrate(self) -> float:
        return self.bitrate_sum / self.beats if self.beats else 0.0

    def rebuffering_ratio(self, step_ms: int) -> float:
        return self.buffering_ms / (self.beats * step_ms) if self.beats else 0.0


class _Acc:
    __slots__ = ("sessions", "beats", "bitrate", "buffering")

    def __init__(self, sessions: set[str] | HyperLogLog) -> None:
        self.sessions = sessions
        self.beats = 0
        self.bitrate = 0
        self.buffering = 0


@dataclass
class _Bucket:
    min_offset: int
    matches: dict[str, dict[Group, _Acc]] = field(default_factory=dict)


class PartitionWindows:
    """The windows of one partition. ``closed_before``: windows below it were reported."""

    def __init__(self, spec: WindowSpec, closed_before: int | None = None) -> None:
        self.spec = spec
        self.buckets: dict[int, _Bucket] = {}
        self.max_ts = NEVER
        self.closed_before = closed_before
        self.next_offset = 0
        self.late = 0
        self.floor = NEVER       # watermark floor from wall time while the partition idles
        self.fresh: dict[str, set[str]] = {}   # match -> sessions new since the last drain

    # -- folding -----------------------------------------------------------------------
    def fold(self, beats: Iterable[tuple[int, Heartbeat]]) -> int:
        """Fold (offset, beat) pairs in offset order; returns how many were late."""
        step, late0, exact = self.spec.step_ms, self.late, self.spec.mode == "exact"
        for offset, hb in beats:
            b = hb.ts_ms // step
            if self.closed_before is None:
                self.closed_before = b - self.spec.size_steps + 1
            elif b < self.closed_before:
                self.late += 1
                self.next_offset = offset + 1
                continue
            bucket = self.buckets.get(b)
            if bucket is None:
                bucket = self.buckets[b] = _Bucket(offset)
            groups = bucket.matches.get(hb.match_id)
            if groups is None:
                groups = bucket.matches[hb.match_id] = {}
            total = groups.get(TOTAL) or self._new(groups, TOTAL)
            if not exact or hb.session_id not in total.sessions:  # type: ignore[operator]
                self._maybe_fresh(b, hb, exact)
            for group in ((hb.region, hb.cdn), TOTAL):   # inlined: the per-beat hot path
                acc = groups.get(group) or self._new(groups, group)
                acc.sessions.add(hb.session_id)
                acc.beats += 1
                acc.bitrate += hb.bitrate_kbps
                acc.buffering += hb.buffering_ms
            if hb.ts_ms > self.max_ts:
                self.max_ts = hb.ts_ms
            self.next_offset = offset + 1
        return self.late - late0

    def _maybe_fresh(self, b: int, hb: Heartbeat, exact: bool) -> None:
        """Views: a session not in this bucket nor the previous one may be new to Redis too.
        Exact mode thus sends arrivals, not every beat; hll mode has no sets to ask."""
        if exact:
            prev = self.buckets.get(b - 1)
            seen = prev.matches.get(hb.match_id, {}).get(TOTAL) if prev else None
            if seen is not None and hb.session_id in seen.sessions:  # type: ignore[operator]
                return
        fresh = self.fresh.get(hb.match_id)
        if fresh is None:
            fresh = self.fresh[hb.match_id] = set()
        fresh.add(hb.session_id)

    def drain_fresh(self) -> dict[str, set[str]]:
        out, self.fresh = self.fresh, {}
        return out

    def _new(self, groups: dict[Group, _Acc], group: Group) -> _Acc:
        sketch: set[str] | HyperLogLog = (
            set() if self.spec.mode == "exact" else HyperLogLog(self.spec.hll_precision))
        acc = groups[group] = _Acc(sketch)
        return acc

    # -- time ---------------------------------------------------------------------------
    def advance(self, to_ms: int) -> None:
        """The partition is idle (nothing new for a while): time has passed ``to_ms`` anyway,
        so windows ending before it may close (the shell passes wall time minus a grace)."""
        self.floor = max(self.floor, to_ms)

    @property
    def watermark(self) -> int:
        return max(self.max_ts - self.spec.lateness_ms, self.floor)

    def closable(self) -> list[int]:
        """Starts of the windows now final, oldest first (not yet evicted)."""
        if self.closed_before is None or not self.buckets:
            return []
        newest = max(self.buckets)
        k = max(self.closed_before, min(self.buckets) - self.spec.size_steps + 1)
        out = []
        while k <= newest and self.spec.end_ms(k) <= self.watermark:
            out.append(k)
            k += 1
        return out

    def evict_through(self, k: int) -> None:
        """Windows up to ``k`` are reported: drop the buckets no open window needs."""
        self.closed_before = max(self.closed_before or NEVER, k + 1)
        for b in [b for b in self.buckets if b < self.closed_before]:
            del self.buckets[b]

    # -- reading ------------------------------------------------------------------------
    def matches(self, k: int) -> set[str]:
        return {m for b in self._window(k) for m in b.matches}

    def stats(self, k: int, match_id: str, groups: bool = True) -> dict[Group, Stats]:
        """The match's figures in window ``k``: every group, or only the total."""
        accs: dict[Group, list[_Acc]] = {}
        for bucket in self._window(k):
            for group, acc in bucket.matches.get(match_id, {}).items():
                if groups or group == TOTAL:
                    accs.setdefault(group, []).append(acc)
        return {g: self._union(a) for g, a in accs.items()}

    def _window(self, k: int) -> list[_Bucket]:
        return [b for i in range(k, k + self.spec.size_steps) if (b := self.buckets.get(i))]

    def _union(self, accs: list[_Acc]) -> Stats:
        if self.spec.mode == "exact":
            sets = [a.sessions for a in accs if isinstance(a.sessions, set)]
            distinct = len(set().union(*sets)) if len(sets) > 1 else len(sets[0])
        else:
            sketches = [a.sessions for a in accs if isinstance(a.sessions, HyperLogLog)]
            merged = sketches[0]
            for other in sketches[1:]:
                merged = merged.merge(other)
            distinct = merged.count()
        return Stats(distinct, sum(a.beats for a in accs), sum(a.bitrate for a in accs),
                     sum(a.buffering for a in accs))

    def commit_offset(self) -> int:
        """Where a restarted consumer must resume to rebuild every open window exactly."""
        if not self.buckets:
            return self.next_offset
        return min(b.min_offset for b in self.buckets.values())
