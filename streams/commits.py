"""The Redis side of an accepted event: the view write, its commit and a view's re-seed.

``commit`` applies one event's change through ``schemas.viewcommit`` (position-checked, so a
replayed event is a no-op) and tells a conflict apart: a view rebuilt under a new epoch is
adopted, one flushed or restarted older is re-seeded from the state in memory under a new
epoch, one advanced by another worker raises ``ViewMovedError`` (the engine recovers the match).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from schemas import codec
from schemas.deadletter import DeadLetter
from schemas.notifications import Notification, note_id
from schemas.view import ViewUpdate, make_update
from streams.metrics import Metrics
from streams.pipeline import Accepted, MatchProcessor, MatchState, Rejected, all_notes
from streams.relay import NoteKey
from streams.viewstore import Position, Status, ViewStore, ViewWrite, next_epoch

log = logging.getLogger(__name__)


def dlq_record(r: Rejected) -> bytes:
    """The ``match.events.dlq`` record of a reject (``schemas.deadletter``)."""
    return DeadLetter.of(r.reason, r.detail, r.raw, r.match_id, r.seq, r.type).encode()


def view_write(match_id: str, epoch: int, seq: int, prev: int, ts: str, before: Any,
               after: dict[str, Any], notes: Sequence[tuple[NoteKey, bytes]], now_ms: int,
               full: bool = False) -> ViewWrite:
    """``notes`` as ``note_records`` gives them: encoded once, for Redis and the relay."""
    update: ViewUpdate = make_update(match_id, epoch, seq, prev, ts, None if full else before,
                                     after)
    return ViewWrite(match_id, epoch, seq, prev, orjson.dumps(after), update.encode(),
                     tuple((note_id(*key), raw) for key, raw in notes), now_ms)


def _note_keys(notes: Sequence[Notification]) -> list[NoteKey]:
    """``(seq, index)`` of each note: its index among the notes its event caused."""
    out, counts = [], {}  # type: ignore[var-annotated]
    for n in notes:
        counts[n.seq] = counts.get(n.seq, -1) + 1
        out.append((n.seq, counts[n.seq]))
    return out


def note_records(notes: Sequence[Notification]) -> list[tuple[NoteKey, bytes]]:
    """Each note with its ``(seq, index)`` key, encoded."""
    return [(k, n.encode()) for k, n in zip(_note_keys(notes), notes, strict=True)]


async def commit(views: ViewStore, metrics: Metrics, proc: MatchProcessor, o: Accepted,
                 records: Sequence[tuple[NoteKey, bytes]]) -> bytes | None:
    """Commit the view; returns the card's bytes as written (None if it was re-seeded)."""
    e = o.event
    ts = codec.format_ts(e.ts)
    for _ in range(5):
        w = view_write(e.match_id, proc.epoch, e.seq, o.prev_seq, ts, o.before, o.after,
                       records, now_ms())
        started = time.perf_counter()
        result = await views.commit(w)
        metrics.commit_seconds.observe(time.perf_counter() - started)
        if result.status is not Status.CONFLICT:
            return w.card
        stored = result.stored
        if stored is not None and stored.seq == o.prev_seq:
            proc.epoch = stored.epoch  # rebuilt under a new epoch: adopt it
            continue
        if stored is None or stored.seq < o.prev_seq:
            await reseed(views, proc, stored)  # flushed, or restarted from an old snapshot
            return None
        raise ViewMovedError(e.match_id, stored)  # another worker advanced it
    raise ViewMovedError(e.match_id, None)


async def reseed(views: ViewStore, proc: MatchProcessor, stored: Position | None) -> None:
    """Write the whole card of ``proc`` under a new epoch (clients take a fresh snapshot),
    with every notification of the match again (ids ``{seq}-{i}``: nothing doubles)."""
    s = proc.state
    if s.doc is None:
        return
    proc.epoch = next_epoch(stored, now_ms())
    w = view_write(s.match_id, proc.epoch, s.seq, 0, ts_of(s), None, s.doc,
                   note_records(all_notes(s)), now_ms(), full=True)
    await views.reset(w)
    log.warning("view re-seeded", extra={"match_id": s.match_id, "epoch": proc.epoch,
                                         "seq": s.seq})


class ViewMovedError(RuntimeError):
    def __init__(self, match_id: str, stored: Position | None) -> None:
        super().__init__(f"view of {match_id} moved to {stored}")
        self.match_id = match_id


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ts_of(state: MatchState) -> str:
    return state.ts or "1970-01-01T00:00:00.000Z"
