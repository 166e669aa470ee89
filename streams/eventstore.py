"""The event store: every accepted match event, once, in Cassandra (one partition per match).

Rows are keyed ``(match_id, seq)`` (``schemas.topology.tables_cql``), so appending the same event
twice is an idempotent upsert. ``append_if_absent`` is a lightweight transaction for the rare
case where the worker cannot tell a redelivery from a conflicting duplicate (after a restart).

``StoreBacklog`` is the imperative shell around a store: a bounded queue the pipeline puts
accepted events into; one task drains it with retries, so events keep flowing to Redis while
Cassandra is down and the store catches up afterwards. Each entry carries a callback run once
the row is durable: the streams app acks the Kafka message there, so the consumer's committed
offset never passes an event that is not in the store and a killed worker loses nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runtime import cassandra
from runtime.secrets import SecretMissing
from schemas.settings import Settings
from schemas.store_access import CassandraRole
from schemas.topology import EVENTS_TABLE
from streams.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    match_id: str
    seq: int
    event_id: str
    type: str
    ts: dt.datetime
    body: bytes


class EventStoreError(Unavailable):
    """The store could not be reached or refused the write (retriable: ``streams.errors``)."""


class EventStore(Protocol):
    async def append(self, events: Sequence[StoredEvent]) -> None: ...

    async def append_if_absent(self, event: StoredEvent) -> bool: ...

    async def load(self, match_id: str, after: int = 0) -> list[StoredEvent]: ...


class InMemoryEventStore:
    """The same contract in a dict; ``down = True`` makes every call fail, as Cassandra would."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, StoredEvent]] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise EventStoreError("event store down")

    async def append(self, events: Sequence[StoredEvent]) -> None:
        self._check()
        for e in events:
            self.rows.setdefault(e.match_id, {})[e.seq] = e

    async def append_if_absent(self, event: StoredEvent) -> bool:
        self._check()
        rows = self.rows.setdefault(event.match_id, {})
        if event.seq in rows:
            return False
        rows[event.seq] = event
        return True

    async def load(self, match_id: str, after: int = 0) -> list[StoredEvent]:
        self._check()
        rows = self.rows.get(match_id, {})
        return [rows[s] for s in sorted(rows) if s > after]


def _to_asyncio(future: Any) -> asyncio.Future[Any]:
    """A cassandra-driver ResponseFuture as an asyncio future (callbacks run on its thread)."""
    loop = asyncio.get_running_loop()
    out: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if out.done():
            return
        if exc is not None:
            out.set_exception(exc)
        else:
            out.set_result(result)

    def ok(result: Any) -> None:
        loop.call_soon_threadsafe(settle, result, None)

    def fail(exc: BaseException) -> None:
        loop.call_soon_threadsafe(settle, None, exc)

    future.add_callbacks(ok, fail)
    return out


class CassandraEventStore:
    """The event store on Cassandra; prepared statements, paged reads in seq order."""

    def __init__(self, session: Any, keyspace: str) -> None:
        self._s = session
        table = f"{keyspace}.{EVENTS_TABLE}"
        cols = "match_id, seq, event_id, type, ts, body"
        self._insert = session.prepare(f"INSERT INTO {table} ({cols}) VALUES (?, ?, ?, ?, ?, ?)")
        self._insert_lwt = session.prepare(
            f"INSERT INTO {table} ({cols}) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._select = session.prepare(
            f"SELECT {cols} FROM {table} WHERE match_id = ? AND seq > ?")

    @classmethod
    def connect(cls, settings: Settings,
                role: str = CassandraRole.STREAMS) -> CassandraEventStore:
        """Blocking: connect as ``role`` (``runtime.cassandra``) and prepare. Raises
        EventStoreError when no host answers or the login is refused."""
        try:
            cluster = cassandra.cluster(settings, role, protocol_version=5)
        except SecretMissing as exc:
            raise EventStoreError(str(exc)) from exc
        try:
            return cls(cluster.connect(), settings.cassandra_keyspace)
        except Exception as exc:  # NoHostAvailable, OperationTimedOut: translated here
            cluster.shutdown()
            where = f"{','.join(settings.cassandra_hosts)}:{settings.cassandra_port}"
            raise EventStoreError(f"cassandra {where}: {exc}") from exc

    def close(self) -> None:
        self._s.cluster.shutdown()

    @staticmethod
    def _row(e: StoredEvent) -> tuple[Any, ...]:
        return (e.match_id, e.seq, e.event_id, e.type, e.ts, e.body)

    async def _run(self, stmt: Any, params: tuple[Any, ...] | None) -> Any:
        try:
            return await _to_asyncio(self._s.execute_async(stmt, params, timeout=5))
        except Exception as exc:
            raise EventStoreError(f"cassandra: {type(exc).__name__}: {exc}") from exc

    async def append(self, events: Sequence[StoredEvent]) -> None:
        # One UNLOGGED batch per match: its rows share a partition, so the batch is one
        # mutation on one replica set (a multi-partition batch would be the anti-pattern).
        # It also costs the driver one request instead of one per event.
        from cassandra.query import BatchStatement, BatchType

        calls = []
        for rows in _chunks(events):
            if len(rows) == 1:
                calls.append(self._run(self._insert, self._row(rows[0])))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for e in rows:
                batch.add(self._insert, self._row(e))
            calls.append(self._run(batch, None))
        await asyncio.gather(*calls)

    async def append_if_absent(self, event: StoredEvent) -> bool:
        rows = await self._run(self._insert_lwt, self._row(event))
        return bool(rows[0][0])  # the callback gets the first page: a list of rows

    def _load_blocking(self, match_id: str, after: int) -> list[StoredEvent]:
        rows = self._s.execute(self._select, (match_id, after), timeout=30)  # pages lazily
        return [StoredEvent(r.match_id, r.seq, r.event_id, r.type, r.ts.replace(tzinfo=dt.UTC),
                            bytes(r.body)) for r in rows]

    async def load(self, match_id: str, after: int = 0) -> list[StoredEvent]:
        """The match's events after ``after``, in seq order (recovery only: runs in a thread)."""
        try:
            return await asyncio.to_thread(self._load_blocking, match_id, after)
        except Exception as exc:
            raise EventStoreError(f"cassandra: {type(exc).__name__}: {exc}") from exc


# Cassandra refuses a batch over batch_size_fail_threshold (50 KiB by default) and warns over
# 5 KiB; keep each one well under the hard limit.
BATCH_BYTES = 24 * 1024


def _chunks(events: Sequence[StoredEvent]) -> list[list[StoredEvent]]:
    """Events grouped by match, each group cut to at most ``BATCH_BYTES`` of bodies."""
    by_match: dict[str, list[list[StoredEvent]]] = {}
    sizes: dict[str, int] = {}
    for e in events:
        groups = by_match.setdefault(e.match_id, [[]])
        if groups[-1] and sizes[e.match_id] + len(e.body) > BATCH_BYTES:
            groups.append([])
            sizes[e.match_id] = 0
        groups[-1].append(e)
        sizes[e.match_id] = sizes.get(e.match_id, 0) + len(e.body) + 64
    return [g for groups in by_match.values() for g in groups]


@dataclass(slots=True)
class _Entry:
    event: StoredEvent
    on_stored: Callable[[], Any] | None
    if_absent: bool


class StoreBacklog:
    """A bounded queue in front of an event store, drained by one task with retries."""

    def __init__(self, store: EventStore, maxsize: int, batch: int = 256,
                 retry_max: float = 5.0) -> None:
        self.store = store
        self._q: asyncio.Queue[_Entry] = asyncio.Queue(maxsize)
        self._batch = batch
        self._retry_max = retry_max
        self.healthy = True
        self.failures = 0

    def __len__(self) -> int:
        return self._q.qsize()

    async def put(self, event: StoredEvent, on_stored: Callable[[], Any] | None = None,
                  if_absent: bool = False) -> None:
        """Queue an event; waits (backpressure) while the backlog is full."""
        await self._q.put(_Entry(event, on_stored, if_absent))

    async def run(self) -> None:
        while True:
            entries = [await self._q.get()]
            while len(entries) < self._batch and not self._q.empty():
                entries.append(self._q.get_nowait())
            await self._write_until_done(entries)
            for entry in entries:
                try:
                    if entry.on_stored is not None:
                        result = entry.on_stored()
                        if asyncio.iscoroutine(result):
                            await result
                except Exception:  # one callback must not end the drain (nothing more stored)
                    log.exception("event store callback failed",
                                  extra={"match_id": entry.event.match_id,
                                         "seq": entry.event.seq})
                finally:
                    self._q.task_done()

    async def _write_until_done(self, entries: list[_Entry]) -> None:
        delay = 0.05
        while True:
            try:
                await self._write(entries)
                if not self.healthy:
                    log.warning("event store back", extra={"backlog": len(self)})
                self.healthy = True
                return
            except Exception as exc:  # down, or a bug: either way the events wait, unacked
                self.failures += 1
                if not isinstance(exc, EventStoreError):
                    log.exception("event store write failed", extra={"error": str(exc)})
                elif self.healthy:
                    log.warning("event store down, holding events", extra={"error": str(exc)})
                self.healthy = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _write(self, entries: list[_Entry]) -> None:
        plain = [e.event for e in entries if not e.if_absent]
        if plain:
            await self.store.append(plain)
        for e in entries:
            if e.if_absent:
                await self.store.append_if_absent(e.event)

    async def drain(self) -> None:
        await self._q.join()


class LazyCassandraEventStore:
    """Connects on first use and again after a failed connect, so a worker can start (and
    keep serving Redis) while Cassandra is down. Once connected the driver reconnects itself."""

    def __init__(self, settings: Settings, role: str = CassandraRole.STREAMS) -> None:
        self._args = (settings, role)
        self._store: CassandraEventStore | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> CassandraEventStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    self._store = await asyncio.to_thread(self._connect_quietly)
        return self._store

    def _connect_quietly(self) -> CassandraEventStore:
        """The driver logs a traceback per failed attempt; while Cassandra is down the
        backlog's one warning says it all (one logging policy: no line per retry)."""
        driver = logging.getLogger("cassandra.cluster")
        level = driver.level
        driver.setLevel(logging.CRITICAL)
        try:
            return CassandraEventStore.connect(*self._args)
        finally:
            driver.setLevel(level)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    async def append(self, events: Sequence[StoredEvent]) -> None:
        await (await self._get()).append(events)

    async def append_if_absent(self, event: StoredEvent) -> bool:
        return await (await self._get()).append_if_absent(event)

    async def load(self, match_id: str, after: int = 0) -> list[StoredEvent]:
        return await (await self._get()).load(match_id, after)
