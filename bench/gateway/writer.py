"""A reference writer of the Redis view contract (``schemas.view``), for tests and benchmarks.

It does what the streams worker's Lua script does, atomically: check the position (a replay is
a no-op), set the card, move the position, append the update record ``"{seq}-0"`` with its
commit time, and score the match in the live set. A new epoch restarts the history. It lives in
``gateway`` only because the gateway may not import ``streams``; the real worker replaces it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.notifications import Notification, note_id
from schemas.topology import RedisKeys
from schemas.view import (
    COMMIT_FIELD,
    HISTORY_MAXLEN,
    UPDATE_FIELD,
    ViewUpdate,
    make_update,
)

COMMIT_LUA = """
local epoch, seq = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur_epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '-1')
local cur_seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if cur_epoch == epoch and seq <= cur_seq then return 0 end
if cur_epoch ~= epoch then redis.call('DEL', KEYS[3]) end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', seq)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], seq .. '-0', ARGV[6], ARGV[4], ARGV[7], ms)
redis.call('ZADD', KEYS[4], ms, ARGV[8])
return 1
"""


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
        self._script = redis.register_script(COMMIT_LUA)

    async def publish(self, match_id: str, card: Any, ts: str | None = None,
                      pipe: Any = None) -> ViewUpdate:
        st = self.state.setdefault(match_id, MatchState())
        update = make_update(match_id, st.epoch, st.seq + 1, st.seq, ts or now_ts(),
                             st.card, card)
        await self.commit(update, card, pipe)
        return update

    async def commit(self, update: ViewUpdate, card: Any, pipe: Any = None) -> None:
        st = self.state.setdefault(update.match_id, MatchState())
        m = update.match_id
        keys = [RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                RedisKeys.live_matches]
        args = [update.epoch, update.seq, orjson.dumps(card), update.encode(), self.maxlen,
                UPDATE_FIELD, COMMIT_FIELD, m]
        await self._script(keys=keys, args=args, client=pipe)
        st.epoch, st.seq, st.card = update.epoch, update.seq, card

    async def rebuild(self, match_id: str, card: Any) -> ViewUpdate:
        """A new epoch, as ``stumpcast rebuild`` would write it: history restarts at 1."""
        st = self.state.setdefault(match_id, MatchState())
        st.epoch += 1
        st.seq, st.card = 0, None
        return await self.publish(match_id, card)

    async def note(self, note: Notification, k: int = 0) -> str:
        entry = note_id(note.seq, k)
        await self.redis.xadd(RedisKeys.notifications(note.match_id),
                              {UPDATE_FIELD: note.encode()}, id=entry)
        return entry

    async def delete(self, match_id: str) -> None:
        await self.redis.delete(RedisKeys.card(match_id), RedisKeys.position(match_id),
                                RedisKeys.history(match_id), RedisKeys.notifications(match_id))
        await self.redis.zrem(RedisKeys.live_matches, match_id)
        self.state.pop(match_id, None)
