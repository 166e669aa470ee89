"""Redis reads for one gateway process: one XREAD for every match the process serves.

The feed keeps a ``MatchCache``/``NotesCache`` per match (``gateway.cache``), loads each once
per process however many clients ask at the same time (single flight), follows the history and
notifications streams with one blocking ``XREAD`` over all their keys, and hands each batch to
the hub. A gap, an unfitting patch or a new epoch (seen in the stream or by the once-a-second
position check, which also measures feed lag) reloads the view and resets subscribers to a
snapshot. Redis errors become ``FeedUnavailable`` here; the loops retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.cache import MatchCache, NotesCache, Outcome, parse_stream_id
from gateway.errors import FeedUnavailable
from gateway.hub import Hub
from runtime.eventloop import raise_if_cancelled
from schemas import protocol as p
from schemas.notifications import note_id, parse_note_id
from schemas.topology import RedisKeys
from schemas.view import COMMIT_FIELD, UPDATE_FIELD, ViewUpdateError, decode_update

log = logging.getLogger("stumpcast.gateway.feed")
T = TypeVar("T")
_U, _T = UPDATE_FIELD.encode(), COMMIT_FIELD.encode()
_P2 = b'"priority":"P2"'  # schemas.notifications: a note's priority, as its encoder writes it


class UnknownMatch(LookupError):
    """No card in Redis for this match id."""


@dataclass
class FeedStats:
    loads: int = 0            # views loaded from Redis (per match per process)
    note_loads: int = 0
    cache_answers: int = 0    # snapshots and resumes answered from memory
    redis_answers: int = 0    # resumes that needed a Redis read
    resets: int = 0           # gap or epoch change: subscribers reset to a snapshot
    wakes: int = 0            # blocking reads ended early because a stream joined
    lag_seconds: float = 0.0


class Feed:
    def __init__(self, redis: Any, reader: Any, hub: Hub, recovery_max: int = 300,
                 block_ms: int = 200, idle_ttl: float = 120.0,
                 on_latency: Callable[[float], None] | None = None) -> None:
        self.redis = redis      # commands (pooled)
        self.reader = reader    # blocking XREAD, its own connection
        self.hub = hub
        self.recovery_max = recovery_max
        self.block_ms = block_ms
        self.idle_ttl = idle_ttl
        self.on_latency = on_latency
        self.on_fanout: Callable[[float], None] | None = None
        self.matches: dict[str, MatchCache] = {}
        self.notes: dict[str, NotesCache] = {}
        self.idle_since: dict[str, float] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self.stats = FeedStats()
        self.last_ok = 0.0
        self._behind: dict[str, float] = {}
        self._http_cache: dict[str, tuple[float, tuple[int, int, str, bytes]]] = {}
        self._live: tuple[float, list[tuple[str, int]]] = (-1e9, [])
        # Waking the shared read when a key joins it (see ``_wake``).
        self._reader_id: int | None = None
        self._keys_gen = 0                  # bumped whenever a stream joins the read
        self._reading_gen: int | None = None  # the generation of the read in flight
        self._keys_added = asyncio.Event()
        # Degradation (gateway.flags sets these): P2 notifications not fanned out, and score
        # updates conflated to one snapshot per match every ``conflate`` seconds.
        self.shed_p2: Callable[[], bool] = lambda: False
        self.conflate = 0.0
        self._held: set[str] = set()          # matches with updates held by conflation
        self._sent: dict[str, float] = {}     # match -> when its last conflated snapshot went
        self.shed_notes = 0
        # Redis Cluster (a client with ``get_nodes``): per-match reads, see ``_cluster_read``.
        self.cluster = callable(getattr(reader, "get_nodes", None))
        self.cluster_poll_ms = 50

    # -- loading, once per process -------------------------------------------------------------

    async def match(self, match_id: str) -> MatchCache:
        cache = self.matches.get(match_id)
        if cache is not None:
            return cache
        return await self._single_flight(f"m:{match_id}", lambda: self._load_match(match_id))

    async def notes_cache(self, match_id: str) -> NotesCache:
        cache = self.notes.get(match_id)
        if cache is not None:
            return cache
        return await self._single_flight(f"n:{match_id}", lambda: self._load_notes(match_id))

    async def _single_flight(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        fut = self._loading.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._loading[key] = fut
            try:
                fut.set_result(await load())
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            finally:
                del self._loading[key]
        return await asyncio.shield(fut)  # type: ignore[no-any-return]

    async def _load_match(self, match_id: str) -> MatchCache:
        card_raw, pos, entries = await self._call(self._read_view(match_id))
        if card_raw is None:
            raise UnknownMatch(match_id)
        cache = _build_match(match_id, card_raw, pos, entries, self.recovery_max)
        self.stats.loads += 1
        self.matches[match_id] = cache
        await self._wake()
        return cache

    async def _read_view(self, match_id: str) -> list[Any]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(RedisKeys.card(match_id))
            pipe.hgetall(RedisKeys.position(match_id))
            pipe.xrevrange(RedisKeys.history(match_id), count=self.recovery_max)
            return list(await pipe.execute())

    async def _load_notes(self, match_id: str) -> NotesCache:
        keep = self.recovery_max
        rows = await self._call(self.redis.xrevrange(RedisKeys.notifications(match_id),
                                                     count=keep))
        entries = [(*parse_note_id(i), f[_U]) for i, f in reversed(rows or [])]
        cache = NotesCache(match_id, entries, complete=len(entries) < keep, keep=keep)
        self.stats.note_loads += 1
        self.notes[match_id] = cache
        await self._wake()
        return cache

    async def notes_from_redis(self, match_id: str, since: p.ChannelPosition
                               ) -> list[tuple[tuple[int, int], bytes]] | None:
        """(position, frame) of the notes after ``since``; None when too many to replay."""
        self.stats.redis_answers += 1
        rows = await self._call(self.redis.xrange(
            RedisKeys.notifications(match_id), min="(" + note_id(since.seq, since.k),
            count=self.recovery_max + 1))
        if len(rows) > self.recovery_max:
            return None
        out = []
        for entry_id, fields in rows:
            pos = parse_note_id(entry_id)
            out.append((pos, p.note(match_id, *pos, fields[_U])))
        return out

    async def _call(self, aw: Awaitable[T]) -> T:
        """The seam: foreign Redis errors become ``FeedUnavailable``."""
        from redis.exceptions import RedisError

        try:
            out = await aw
        except (RedisError, OSError) as exc:
            raise FeedUnavailable(f"redis: {exc}") from None
        self.last_ok = time.monotonic()
        return out

    # -- HTTP reads ----------------------------------------------------------------------------

    async def view(self, match_id: str) -> tuple[int, int, str, bytes]:
        """(epoch, seq, ts, card JSON) from the cache, else one Redis read (kept 1 s)."""
        cache = self.matches.get(match_id)
        if cache is not None:
            return cache.epoch, cache.seq, cache.ts, cache.card_json()
        now = time.monotonic()
        hit = self._http_cache.get(match_id)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(RedisKeys.card(match_id))
            pipe.hgetall(RedisKeys.position(match_id))
            card_raw, pos = await self._call(pipe.execute())
        if card_raw is None:
            raise UnknownMatch(match_id)
        out = (int(pos.get(b"epoch", 0)), int(pos.get(b"seq", 0)), "", bytes(card_raw))
        if len(self._http_cache) > 10_000:
            self._http_cache.clear()
        self._http_cache[match_id] = (now, out)
        return out

    async def live_matches(self) -> list[tuple[str, int]]:
        now = time.monotonic()
        if now - self._live[0] < 1.0:
            return self._live[1]
        rows = await self._call(self.redis.zrevrange(RedisKeys.live_matches, 0, 999,
                                                     withscores=True))
        live = [(m.decode() if isinstance(m, bytes) else str(m), int(s)) for m, s in rows]
        self._live = (now, live)
        return live

    # -- following the streams -----------------------------------------------------------------

    async def run(self) -> None:
        """Forever: one XREAD over every cached match's history and notifications streams."""
        backoff = 0.1
        while True:
            raise_if_cancelled()  # a stop's cancel lost in redis-py's send (runtime.eventloop)
            gen = self._keys_gen
            streams = self._stream_offsets()
            if not streams:
                self._keys_added.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._keys_added.wait(), self.block_ms / 1000)
                continue
            try:
                if self.cluster:
                    reply = await self._cluster_read(streams)
                else:
                    if self._reader_id is None:
                        self._reader_id = int(await self._call(self.reader.client_id()))
                    self._reading_gen = gen
                    reply = await self._call(self.reader.xread(streams, count=500,
                                                               block=self.block_ms))
                backoff = 0.1
            except FeedUnavailable as exc:
                self._reader_id = None  # a new connection has a new client id
                log.warning("feed read failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._reading_gen = None
            for key, rows in _normalise(reply):
                await self._dispatch(key, rows)
            self._evict_idle()

    async def _cluster_read(self, streams: dict[str, str]) -> list[Any]:
        """On Redis Cluster: one XREAD per match (its history and notifications streams share
        the match's hash tag, so one slot), all at once, each to its slot's master; a cluster
        refuses one XREAD over keys of several slots (CROSSSLOT). The reads do not block
        (a blocked connection per match would not scale): when none has news, wait up to
        ``cluster_poll_ms`` or until a stream joins. Costs up to that much extra latency."""
        by_match: dict[str, dict[str, str]] = {}
        for key, offset in streams.items():
            by_match.setdefault(RedisKeys.match_of(key)[1], {})[key] = offset
        replies = await self._call(asyncio.gather(
            *(self.reader.xread(group, count=500) for group in by_match.values())))
        out = [pair for reply in replies for pair in _normalise(reply)]
        if not any(rows for _, rows in out):
            self._keys_added.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._keys_added.wait(), self.cluster_poll_ms / 1000)
        return out

    async def _wake(self) -> None:
        """A stream joined: end the blocking read now so the next one includes it.

        Without this a new match's first live update waits for the read in flight to time
        out (up to ``block_ms``). ``CLIENT UNBLOCK`` makes the blocked XREAD return as if timed
        out; it finds nothing to unblock when the XREAD has not reached Redis yet, so it is
        retried briefly while that read (which lacks the new key) is still in flight.
        """
        self._keys_gen += 1
        self._keys_added.set()
        if self.cluster:  # nothing blocks on a cluster (``_cluster_read``)
            return
        for _ in range(50):
            reading, rid = self._reading_gen, self._reader_id
            if reading is None or reading == self._keys_gen or rid is None:
                return
            with contextlib.suppress(FeedUnavailable):
                if await self._call(self.redis.client_unblock(rid)):
                    self.stats.wakes += 1
                    return
            await asyncio.sleep(0.002)

    def _stream_offsets(self) -> dict[str, str]:
        out = {RedisKeys.history(m): f"{c.seq}-0" for m, c in self.matches.items()}
        for m, n in self.notes.items():
            out[RedisKeys.notifications(m)] = note_id(*n.last)
        return out

    async def _dispatch(self, key: bytes | str, rows: list[Any]) -> None:
        try:
            kind, match_id = RedisKeys.match_of(key)
        except ValueError:
            log.error("reply for a key the feed does not read", extra={"key": repr(key)})
            return
        if kind == "notifications" and match_id in self.notes:
            self._notes_batch(match_id, rows)
        elif kind == "history" and match_id in self.matches:
            await self._history_batch(match_id, rows)

    def _notes_batch(self, match_id: str, rows: list[Any]) -> None:
        cache = self.notes[match_id]
        shed = self.shed_p2()
        key = f"{p.NOTES}:{match_id}"
        subscribers = self.hub.subscribers(key)
        items = []
        for entry_id, fields in rows:
            pos = parse_note_id(entry_id)
            frame = cache.add(*pos, fields[_U])
            if frame is not None:
                if _P2 in fields[_U]:
                    self.hub.stats.p2_offered += subscribers  # before the shed: the load
                    if shed:
                        self.shed_notes += 1  # kept for resumes; not pushed while shedding
                        continue
                    self.hub.stats.p2_sent += subscribers
                items.append((pos, frame))
        self.hub.publish_notes(key, items, time.monotonic())

    async def _history_batch(self, match_id: str, rows: list[Any]) -> None:
        cache = self.matches[match_id]
        items: list[tuple[int, bytes]] = []
        commit_ms = None
        for _, fields in rows:
            raw = fields[_U]
            try:
                outcome = cache.apply(decode_update(raw), raw)
            except ViewUpdateError as exc:
                log.error("bad update record; reloading", extra={"match": match_id,
                                                                  "error": str(exc)})
                outcome = Outcome.GAP
            if outcome is Outcome.APPLIED:
                items.append((cache.seq, raw))
                commit_ms = fields.get(_T, commit_ms)
            elif outcome is not Outcome.DUPLICATE:
                self._publish(match_id, cache, items)
                await self._reset(match_id)
                return
        self._publish(match_id, cache, items)
        if commit_ms is not None and self.on_latency is not None:
            self.on_latency(time.time() - int(commit_ms) / 1000)

    def _publish(self, match_id: str, cache: MatchCache, items: list[tuple[int, bytes]]) -> None:
        if items and self.conflate > 0:
            self._held.add(match_id)  # flushed by ``conflate_loop``
            return
        if items:
            start = time.monotonic()
            self.hub.publish_scores(f"{p.MATCH}:{match_id}", items, cache.snapshot_frame, start)
            if self.on_fanout is not None:
                self.on_fanout(time.monotonic() - start)

    async def _reset(self, match_id: str) -> None:
        """Reload the view and send every subscriber a snapshot (new epoch, or a gap)."""
        self.matches.pop(match_id, None)
        self.stats.resets += 1
        try:
            cache = await self.match(match_id)
        except (FeedUnavailable, UnknownMatch) as exc:
            log.warning("reload failed", extra={"match": match_id, "error": str(exc)})
            return
        self.hub.reset(f"{p.MATCH}:{match_id}", cache.seq, cache.snapshot_frame(),
                       time.monotonic())

    async def conflate_loop(self, tick: float = 0.1) -> None:
        """Level 2: at most one snapshot per match every ``conflate`` seconds (latest wins);
        when conflation ends, whatever is still held goes out at once."""
        while True:
            await asyncio.sleep(tick)
            self.flush_conflated(time.monotonic())

    def flush_conflated(self, now: float) -> int:
        """Send the held matches that are due a snapshot; returns how many were sent."""
        sent = 0
        for match_id in list(self._held):
            cache = self.matches.get(match_id)
            if cache is None:
                self._held.discard(match_id)
            elif self.conflate <= 0 or now - self._sent.get(match_id, -1e9) >= self.conflate:
                self._held.discard(match_id)
                self._sent[match_id] = now
                self.hub.reset(f"{p.MATCH}:{match_id}", cache.seq, cache.snapshot_frame(), now)
                sent += 1
        return sent

    # -- position check, lag, eviction ---------------------------------------------------------

    async def watch_positions(self, interval: float = 1.0) -> None:
        """Once a second: one pipelined read of every cached position (epoch change, lag)."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(FeedUnavailable):
                await self.check_positions()
            raise_if_cancelled()  # a stop's cancel lost in redis-py's send (runtime.eventloop)

    async def check_positions(self) -> None:
        # What each cache held when the read was sent: the XREAD connection may deliver newer
        # updates before this reply is processed, so "Redis is behind the cache" is only a
        # rebuild when Redis is behind what the cache held *before* asking (else: a race).
        asked = {m: (c, c.epoch, c.seq) for m, c in self.matches.items()}
        ids = list(asked)
        async with self.redis.pipeline(transaction=False) as pipe:
            # Answered even with no match cached (readiness). Not PING: a Redis Cluster
            # pipeline refuses commands without a key; this one goes to one master.
            pipe.exists(RedisKeys.live_matches)
            for m in ids:
                pipe.hgetall(RedisKeys.position(m))
            replies = await self._call(pipe.execute())
        now, lag = time.monotonic(), 0.0
        for m, pos in zip(ids, replies[1:], strict=True):
            cache = self.matches.get(m)
            held, epoch_then, seq_then = asked[m]
            if cache is None or cache is not held or not pos:
                continue  # evicted or reloaded meanwhile
            epoch, seq = int(pos[b"epoch"]), int(pos[b"seq"])
            if epoch != epoch_then or seq < seq_then:
                await self._reset(m)
            elif seq > cache.seq:
                lag = max(lag, now - self._behind.setdefault(m, now))
            else:
                self._behind.pop(m, None)
        self.stats.lag_seconds = lag

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for m in list(self.matches) + list(self.notes):
            busy = (self.hub.subscribers(f"{p.MATCH}:{m}")
                    or self.hub.subscribers(f"{p.NOTES}:{m}"))
            if busy:
                self.idle_since.pop(m, None)
            elif now - self.idle_since.setdefault(m, now) > self.idle_ttl:
                self.matches.pop(m, None)
                self.notes.pop(m, None)
                self.idle_since.pop(m, None)


def _build_match(match_id: str, card_raw: bytes, pos: dict[bytes, bytes],
                 entries: list[Any], recovery_max: int) -> MatchCache:
    import orjson

    epoch, seq = int(pos.get(b"epoch", 0)), int(pos.get(b"seq", 0))
    history = [(parse_stream_id(i)[0], f[_U]) for i, f in reversed(entries or [])]
    ts = ""
    if history and history[-1][0] == seq:
        with contextlib.suppress(ViewUpdateError):
            ts = decode_update(history[-1][1]).ts
    return MatchCache(match_id, epoch, seq, ts, orjson.loads(card_raw), history, recovery_max)


def _normalise(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREAD replies as (key, rows) pairs, whether RESP2 (list) or RESP3 (dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) and v[0]
                 and isinstance(v[0][0], list | tuple) else v) for k, v in reply.items()]
    return [(k, rows) for k, rows in reply]
