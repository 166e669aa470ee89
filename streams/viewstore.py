"""The Redis view store: card, position and history of a match, written in one Lua step.

The contract is ``schemas.view``: per match a card document, a position ``{epoch, seq}`` and a
bounded history stream whose entry IDs are ``"{seq}-0"``, written only by the view-commit
script of ``schemas.viewcommit`` (the one the tests and benchmarks use too). ``commit`` applies
one event's change only when the stored position is the one the writer folded from (optimistic
concurrency), so

* a replayed event is a no-op (``Status.DUPLICATE``), whatever the writer's state;
* a view flushed, rebuilt under a new epoch, or advanced by another worker after a rebalance is
  a ``Status.CONFLICT``: the writer reloads its state and tries again.

``reset`` writes a whole card under a new, higher epoch and restarts the history; it is how
``stumpcast rebuild`` and a worker that finds its view flushed re-seed the view. The event's
notifications are appended to ``RedisKeys.notifications`` by the same script with IDs
``schemas.notifications.note_id(seq, k)``, so appending them twice changes nothing. Each
history entry also carries its commit time (``schemas.view.COMMIT_FIELD``), which the gateway's
delivery latency is measured from.

``InMemoryViewStore`` has the same behaviour for tests of the pipeline without Redis; both run
the contract test in ``tests/streams/test_stores_view.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.redisconn import async_redis
from schemas.notifications import parse_note_id
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from schemas.view import HISTORY_MAXLEN, UPDATE_FIELD, history_id
from schemas.viewcommit import (
    AsyncViewCommitter,
    CommitResult,
    Mode,
    Position,
    Status,
    ViewWrite,
)
from schemas.viewcommit import script_call as script_call  # the benchmark's plain loop
from schemas.viewcommit import source as lua_source  # noqa: F401  (the same)
from streams.errors import Unavailable


@dataclass(frozen=True, slots=True)
class StoredView:
    card: bytes | None
    position: Position | None


class ViewStoreError(Unavailable):
    """Redis could not be reached or refused the write (retriable: ``streams.errors``)."""


class ViewStore(Protocol):
    async def commit(self, w: ViewWrite) -> CommitResult: ...

    async def reset(self, w: ViewWrite) -> CommitResult: ...

    async def read(self, match_id: str) -> StoredView: ...

    async def history(self, match_id: str) -> list[tuple[str, bytes]]: ...

    async def notes(self, match_id: str) -> list[tuple[str, bytes]]: ...


def next_epoch(stored: Position | None, now_ms: int) -> int:
    """A new epoch above any stored one; wall-clock ms so a view rebuilt after a flush (when the
    old epoch is lost) still moves forward."""
    return max(now_ms, (stored.epoch + 1) if stored else 1)


class RedisViewStore:
    """The view store on Redis (``redis.asyncio``); one EVALSHA per commit."""

    def __init__(self, client: Any, history_maxlen: int = HISTORY_MAXLEN) -> None:
        self._r = client
        self._views = AsyncViewCommitter(client, history_maxlen)

    @classmethod
    def connect(cls, settings: Settings, user: str = RedisUser.STREAMS,
                **kwargs: Any) -> RedisViewStore:
        """On ``settings.redis_url`` as ``user`` (``runtime.redisconn``)."""
        client = async_redis(settings, user, socket_timeout=5, socket_connect_timeout=2)
        return cls(client, **kwargs)

    async def aclose(self) -> None:
        await self._r.aclose()

    async def _run(self, mode: Mode, w: ViewWrite) -> CommitResult:
        try:
            return await self._views.run(mode, w)
        except Exception as exc:  # redis.RedisError, OSError: translated at the seam
            raise ViewStoreError(f"view commit of {w.match_id}@{w.seq}: {exc}") from exc

    async def commit(self, w: ViewWrite) -> CommitResult:
        return await self._run("commit", w)

    async def reset(self, w: ViewWrite) -> CommitResult:
        return await self._run("reset", w)

    async def read(self, match_id: str) -> StoredView:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.get(RedisKeys.card(match_id))
                pipe.hmget(RedisKeys.position(match_id), "epoch", "seq")
                card, (epoch, seq) = await pipe.execute()
        except Exception as exc:
            raise ViewStoreError(f"view read of {match_id}: {exc}") from exc
        pos = Position(int(epoch), int(seq)) if seq is not None else None
        return StoredView(card, pos)

    async def _xrange(self, key: str) -> list[tuple[str, bytes]]:
        try:
            rows = await self._r.xrange(key)
        except Exception as exc:
            raise ViewStoreError(f"xrange {key}: {exc}") from exc
        field_name = UPDATE_FIELD.encode()
        return [(eid.decode(), fields[field_name]) for eid, fields in rows]

    async def history(self, match_id: str) -> list[tuple[str, bytes]]:
        return await self._xrange(RedisKeys.history(match_id))

    async def notes(self, match_id: str) -> list[tuple[str, bytes]]:
        return await self._xrange(RedisKeys.notifications(match_id))


@dataclass
class _FakeMatch:
    card: bytes | None = None
    position: Position | None = None
    history: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[tuple[str, bytes]] = field(default_factory=list)


class InMemoryViewStore:
    """The same contract in a dict, for tests of the pipeline without Redis."""

    def __init__(self, history_maxlen: int = HISTORY_MAXLEN) -> None:
        self._maxlen = history_maxlen
        self.matches: dict[str, _FakeMatch] = {}
        self.live: dict[str, int] = {}

    def flush(self) -> None:
        self.matches.clear()
        self.live.clear()

    def _check(self, mode: str, m: _FakeMatch, w: ViewWrite) -> CommitResult | None:
        pos = m.position
        if mode == "commit":
            if pos is not None and pos.seq >= w.seq:
                return CommitResult(Status.DUPLICATE, pos)
            if pos is not None and (pos.epoch != w.epoch or pos.seq != w.prev_seq):
                return CommitResult(Status.CONFLICT, pos)
            if pos is None and w.prev_seq != 0:
                return CommitResult(Status.CONFLICT, None)
        elif pos is not None and pos.epoch >= w.epoch:
            return CommitResult(Status.CONFLICT, pos)
        return None

    async def _run(self, mode: str, w: ViewWrite) -> CommitResult:
        m = self.matches.setdefault(w.match_id, _FakeMatch())
        refused = self._check(mode, m, w)
        if refused is not None:
            return refused
        if mode == "reset":
            m.history.clear()
        m.card, m.position = w.card, Position(w.epoch, w.seq)
        m.history.append((history_id(w.seq), w.update))
        del m.history[:-self._maxlen]
        for entry_id, raw in w.notes:
            if not m.notes or parse_note_id(entry_id) > parse_note_id(m.notes[-1][0]):
                m.notes.append((entry_id, raw))
        self.live[w.match_id] = w.now_ms
        return CommitResult(Status.APPLIED, m.position)

    async def commit(self, w: ViewWrite) -> CommitResult:
        return await self._run("commit", w)

    async def reset(self, w: ViewWrite) -> CommitResult:
        return await self._run("reset", w)

    async def read(self, match_id: str) -> StoredView:
        m = self.matches.get(match_id, _FakeMatch())
        return StoredView(m.card, m.position)

    async def history(self, match_id: str) -> list[tuple[str, bytes]]:
        return list(self.matches.get(match_id, _FakeMatch()).history)

    async def notes(self, match_id: str) -> list[tuple[str, bytes]]:
        return list(self.matches.get(match_id, _FakeMatch()).notes)
