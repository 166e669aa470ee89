"""``stumpcast rebuild``: the Redis view of a match rebuilt from the event store, new epoch."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from schemas import codec
from schemas.settings import Settings
from streams.engine import note_records, view_write
from streams.eventstore import CassandraEventStore
from streams.pipeline import ScorecardFolder, all_notes, replay_state
from streams.viewstore import Position, RedisViewStore, Status, next_epoch


@dataclass(frozen=True)
class RebuildReport:
    match_id: str
    events: int
    seq: int
    live: Position | None
    equal: bool
    epoch: int
    written: bool

    @property
    def ok(self) -> bool:
        return self.written and self.equal

    def text(self) -> str:
        live = f"epoch {self.live.epoch} seq {self.live.seq}" if self.live else "none"
        verdict = "equal to" if self.equal else "DIFFERENT from"
        return (f"rebuild {self.match_id}: {self.events} events folded to seq {self.seq}; "
                f"{verdict} the live view ({live}); "
                + (f"written under epoch {self.epoch}" if self.written else "NOT written"))


async def rebuild(settings: Settings, match_id: str) -> RebuildReport:
    store = await asyncio.to_thread(CassandraEventStore.connect, settings)
    views = RedisViewStore.connect(settings)
    try:
        rows = await store.load(match_id)
        state = replay_state(match_id, (codec.decode(r.body) for r in rows), ScorecardFolder())
        live = await views.read(match_id)
        equal = live.card is not None and state.doc is not None and \
            orjson.loads(live.card) == state.doc
        now_ms = time.time_ns() // 1_000_000
        epoch = next_epoch(live.position, now_ms)
        written = False
        if state.doc is not None:
            w = view_write(match_id, epoch, state.seq, 0, state.ts, None, state.doc,
                           note_records(all_notes(state)), now_ms, full=True)
            written = (await views.reset(w)).status is Status.APPLIED
        return RebuildReport(match_id, len(rows), state.seq, live.position, equal, epoch,
                             written)
    finally:
        store.close()
        await views.aclose()
