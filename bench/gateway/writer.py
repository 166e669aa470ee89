"""The Redis view writer of the tests and benchmarks: a thin user of ``schemas.viewcommit``.

It writes through the same Lua script as the streams worker (position check, card, position,
history entry ``"{seq}-0"`` with its commit time, live-set score), so what the gateway reads in
a test is what production writes. What it adds is the worker's bookkeeping in small: per match
the epoch, seq and card it last wrote, to fold the next update from (``prev_seq``) and to diff
the next card against. A write Redis refuses (the view is not at the position this writer holds)
raises ``CommitRefused``; a write queued on a caller's pipeline is checked by nobody (the
benchmarks' hot loop), so there this writer assumes it applied.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.notifications import Notification, note_id
from schemas.topology import RedisKeys
from schemas.view import HISTORY_MAXLEN, UPDATE_FIELD, ViewUpdate, make_update
from schemas.viewcommit import (
    COMMIT,
    RESET,
    AsyncViewCommitter,
    CommitResult,
    Mode,
    Status,
    ViewWrite,
)


class CommitRefused(RuntimeError):
    """The view commit returned a duplicate or a conflict: Redis holds another position."""

    def __init__(self, update: ViewUpdate, result: CommitResult) -> None:
        super().__init__(f"{update.match_id}: commit of {update.epoch}/{update.seq} from "
                         f"{update.prev_seq} refused ({result.status.name}), stored "
                         f"{result.stored}")
        self.result = result


def now_ts() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class MatchState:
    epoch: int = 1
    seq: int = 0
    card: Any = None


class ViewWriter:
    """Writes updates of many matches; keeps each match's last card to diff against."""

    def __init__(self, redis: Any, maxlen: int = HISTORY_MAXLEN) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.state: dict[str, MatchState] = {}
        self._views = AsyncViewCommitter(redis, maxlen)

    async def publish(self, match_id: str, card: Any, ts: str | None = None,
                      pipe: Any = None) -> ViewUpdate:
        st = self.state.setdefault(match_id, MatchState())
        update = make_update(match_id, st.epoch, st.seq + 1, st.seq, ts or now_ts(),
                             st.card, card)
        await self.commit(update, card, pipe)
        return update

    async def commit(self, update: ViewUpdate, card: Any, pipe: Any = None,
                     mode: Mode = COMMIT) -> None:
        """Write ``update`` (folded from ``update.prev_seq``) and ``card``, the card it makes."""
        w = ViewWrite(update.match_id, update.epoch, update.seq, update.prev_seq,
                      orjson.dumps(card), update.encode(), now_ms=time.time_ns() // 1_000_000)
        if pipe is not None:
            await self._views.queue(pipe, mode, w)
        else:
            result = await self._views.run(mode, w)
            if result.status is not Status.APPLIED:
                raise CommitRefused(update, result)
        st = self.state.setdefault(update.match_id, MatchState())
        st.epoch, st.seq, st.card = update.epoch, update.seq, card

    async def rebuild(self, match_id: str, card: Any) -> ViewUpdate:
        """A new epoch, as ``stumpcast rebuild`` writes it: the history restarts at seq 1."""
        st = self.state.setdefault(match_id, MatchState())
        update = make_update(match_id, st.epoch + 1, 1, 0, now_ts(), None, card)
        await self.commit(update, card, mode=RESET)
        return update

    async def note(self, note: Notification, k: int = 0) -> str:
        """A notification on its own (production appends them in the view commit of the event
        that caused them; the notes tests need them without a view change)."""
        entry = note_id(note.seq, k)
        await self.redis.xadd(RedisKeys.notifications(note.match_id),
                              {UPDATE_FIELD: note.encode()}, id=entry)
        return entry

    async def delete(self, match_id: str) -> None:
        await self.redis.delete(RedisKeys.card(match_id), RedisKeys.position(match_id),
                                RedisKeys.history(match_id), RedisKeys.notifications(match_id))
        await self.redis.zrem(RedisKeys.live_matches, match_id)
        self.state.pop(match_id, None)
