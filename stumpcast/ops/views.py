"""How far each live match's view is behind its events: the pure core of the freshness SLI.

The operations server reads ``match.events`` itself (no consumer group) and tells this tracker
each event it sees, with the instant it saw it; once a second it tells it each live match's view
position (``seq`` from Redis). An event is *pending* while the view's seq is below the event's.
A match's **staleness** is the age of its oldest pending event: 0 when the view has taken
every event that arrived, growing by one second per second while a worker is down, stuck, or
cannot write. Measured from outside the streams workers, it keeps working when they are gone,
which is when it matters.

Comparing positions (not instants) keeps it exact: a view that moved between the event's
arrival and our read is not called stale. An event that will never be applied (from a source
the workers refuse, or a duplicate of an applied seq) is not counted: the first by the allowed
sources, the second because its seq is not above the view's.

Bounded: a match is live while an event arrived in the last ``live_seconds`` or one is pending;
at most ``max_pending`` pending events are kept per match (the oldest, which set the age), and an
event still pending after ``live_seconds`` is dropped: it will never be applied (dead-lettered,
say, for an unknown match, or its view was deleted), and keeping it would keep a finished match
stale for ever. So staleness tops out at ``live_seconds``, far above any alert threshold, while
new events keep arriving.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LIVE_SECONDS = 600.0
MAX_PENDING = 10_000
FRESH_SECONDS = 10.0  # the freshness SLO's threshold: within 10 s of the events


@dataclass
class _Match:
    last_event: float = 0.0
    view_seq: int | None = None
    # (seq, arrival) of events above the view's seq, sorted by seq
    pending: list[tuple[int, float]] = field(default_factory=list)


class ViewTracker:
    def __init__(self, live_seconds: float = LIVE_SECONDS,
                 max_pending: int = MAX_PENDING) -> None:
        self.live_seconds = live_seconds
        self.max_pending = max_pending
        self._matches: dict[str, _Match] = {}

    def event(self, match_id: str, seq: int, at: float) -> None:
        """An event of ``match_id`` arrived in match.events at ``at`` (seconds)."""
        m = self._matches.setdefault(match_id, _Match())
        m.last_event = max(m.last_event, at)
        if m.view_seq is not None and seq <= m.view_seq:
            return
        i = bisect.bisect_left(m.pending, (seq, float("-inf")))
        if i < len(m.pending) and m.pending[i][0] == seq:
            return  # a redelivery or a conflicting copy: the first arrival counts
        if len(m.pending) < self.max_pending:
            m.pending.insert(i, (seq, at))

    def live(self, now: float) -> list[str]:
        """Matches with an event in the last ``live_seconds`` or a pending one; the others
        are forgotten, and so are events pending for longer than ``live_seconds``."""
        for m in self._matches.values():
            m.pending = [(seq, at) for seq, at in m.pending if now - at <= self.live_seconds]
        gone = [k for k, m in self._matches.items()
                if not m.pending and now - m.last_event > self.live_seconds]
        for k in gone:
            del self._matches[k]
        return list(self._matches)

    def view(self, match_id: str, seq: int | None) -> None:
        """The view's position now (None: the match has no view yet)."""
        m = self._matches.get(match_id)
        if m is None or seq is None:
            return
        m.view_seq = seq if m.view_seq is None else max(m.view_seq, seq)
        cut = bisect.bisect_right(m.pending, (m.view_seq, float("inf")))
        del m.pending[:cut]

    def staleness(self, match_id: str, now: float) -> float:
        m = self._matches.get(match_id)
        if m is None or not m.pending:
            return 0.0
        return max(0.0, now - min(at for _, at in m.pending))

    def pending(self, match_id: str) -> int:
        m = self._matches.get(match_id)
        return len(m.pending) if m else 0

    def snapshot(self, now: float, limit: int) -> list[tuple[str, float]]:
        """(match, staleness) of at most ``limit`` live matches: the stalest first, then the
        most recently active, so an alert never loses its match to the bound."""
        rows = [(k, self.staleness(k, now), m.last_event) for k, m in self._matches.items()]
        rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
        return [(k, s) for k, s, _ in rows[:limit]]
