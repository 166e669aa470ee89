"""Notifications to Kafka exactly once: a transactional relay per ``match.events`` partition.

A worker killed between sending a notification and recording that it did would send it again
on restart, and consumers of ``match.notifications`` (the notifier, the media worker, analysts)
would see it twice. So notifications are not sent as a side effect of folding. The engine hands
each match's notifications, with their deterministic ids ``(seq, index)``, to this relay, which
publishes them in Kafka transactions that also write the match's **checkpoint** (the last id
published; record: ``schemas.relay``) to the compacted ``match.notifications.relay`` topic.
Either both land or neither.

Fencing follows ownership. A match's events arrive on one partition ``p`` of ``match.events``,
and its notifications are published by the producer with transactional id
``stumpcast-notify-relay-{p}``, whose checkpoints live in partition ``p`` of the relay topic.
A worker that takes over ``p`` (after a kill or a rebalance) opens that producer, which fences
the previous owner and aborts its open transaction, then reads partition ``p`` of the relay
topic to its end: no other transactional id writes there, so nothing committed is hidden from
it. It publishes only ids above the checkpoint, and ids are the same on every fold of the same
events, so a redelivered or re-recovered event's notifications are skipped, not repeated.

Nothing is lost either. An input event's Kafka ack is held (``gate``) until every notification
caused at or before its seq is committed, so a restart re-reads any event whose notifications
might be missing; the engine also hands the relay every notification of a match it recovers
from the event store.

Ownership. The engine hands the relay only notes and acks of partitions it holds, and
``revoke(partitions)`` when the group takes them away: the partition's transaction under way is
finished (its thread runs one call at a time) and an open one aborted, its pending notes and
held acks are dropped (the new owner re-reads those events, recovers their matches and
publishes what the checkpoint lacks). A relay fenced by another worker (a zombie that woke up,
or this worker is the zombie and will be revoked shortly) re-opens the partition after a pause,
keeping its pending notes and held acks: the checkpoint read on re-opening says which of them
are still to go, so nothing is published twice and nothing held is lost.

Memory is bounded: ``room()`` waits while ``max_held`` notes and acks are held (the engine
awaits it before taking an event, so consumption pauses while Kafka refuses transactions).

``NoteRelay`` is the asyncio shell; the transactional log is behind ``TxnLog``, with
``KafkaTxnLog`` for the worker and ``InMemoryTxnLog`` for unit tests of the relay itself.
Blocking client calls run in the partition's own thread, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import relay as contract
from schemas.access import RELAY_PREFIX
from schemas.notifications import NoteKey

log = logging.getLogger(__name__)

TXN_PREFIX = RELAY_PREFIX  # the streams principal may use these ids (schemas.access)


class FencedError(RuntimeError):
    """Another worker opened this partition's transactional producer: it owns the partition."""


class TxnLog(Protocol):
    """The transactional sink of one partition. Both calls block (they run in a thread)."""

    def open(self) -> dict[str, NoteKey]:
        """Fence older owners; return the committed checkpoint of every match."""
        ...

    def commit(self, notes: Sequence[tuple[str, bytes]], checkpoints: dict[str, NoteKey]) -> None:
        """Publish ``(match_id, bytes)`` notes and the checkpoints atomically, or raise."""
        ...

    def close(self) -> None: ...


@dataclass
class _Partition:
    number: int
    log: TxnLog
    checkpoint: dict[str, NoteKey] | None = None  # None until the log is open
    pending: dict[str, list[tuple[NoteKey, bytes]]] = field(default_factory=dict)
    queued: dict[str, NoteKey] = field(default_factory=dict)  # highest id taken per match
    # acks held per match, a heap by seq: released from the front, never rescanned whole
    waiting: dict[str, list[tuple[int, int, Callable[[], Any]]]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_commit: float = 0.0  # monotonic start of the last transaction
    committing: int = 0  # notes in the transaction under way
    # Its own thread: the loop's default executor also serves event-store reads (recoveries),
    # which must not queue behind a partition's open (~1 s) or its commits.
    thread: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="note-relay"))


class NoteRelay:
    def __init__(self, open_log: Callable[[int], TxnLog],
                 on_published: Callable[[int, float], None] | None = None,
                 retry_max: float = 5.0, min_interval: float = 0.0, max_held: int = 20_000,
                 reopen_pause: float = 1.0) -> None:
        """``open_log(p)`` makes partition p's log; ``on_published(count, seconds)`` runs
        after each commit (metrics). Transactions of one partition start at least
        ``min_interval`` seconds apart: a sparse note (a live match) goes at once, a busy
        partition batches (each transaction costs the broker several requests and two
        markers, whatever its size). A fenced partition is re-opened ``reopen_pause`` seconds
        later (doubling up to ``retry_max`` while it keeps being fenced)."""
        self._open_log, self._on_published = open_log, on_published
        self._retry_max, self._min_interval = retry_max, min_interval
        self._max_held, self._reopen_pause = max_held, reopen_pause
        self._parts: dict[int, _Partition] = {}
        self._ticket = 0  # ties in a heap of acks
        self._freed = asyncio.Event()

    # -- the engine's side -------------------------------------------------------------------

    def publish(self, match_id: str, partition: int,
                notes: Sequence[tuple[NoteKey, bytes]]) -> None:
        """Queue notes of one match, in id order. Ids at or below what was already taken (or
        committed, once the checkpoint is known) are dropped: they are out already."""
        part = self._part(partition)
        floor = max(part.queued.get(match_id, (0, -1)),
                    (part.checkpoint or {}).get(match_id, (0, -1)))
        fresh = [(k, b) for k, b in notes if k > floor]
        if fresh:
            part.pending.setdefault(match_id, []).extend(fresh)
            part.queued[match_id] = fresh[-1][0]
            part.wake.set()

    def gate(self, match_id: str, partition: int, seq: int, ack: Callable[[], Any] | None) -> Any:
        """Run ``ack`` now if no notification caused at or before ``seq`` is still to be
        committed, else once it is (returns its result, which may be awaitable)."""
        if ack is None:
            return None
        part = self._part(partition)
        if self._clear(part, match_id, seq):
            return ack()
        self._ticket += 1
        heapq.heappush(part.waiting.setdefault(match_id, []), (seq, self._ticket, ack))
        return None

    def pending(self) -> int:
        return sum(len(v) for p in self._parts.values() for v in p.pending.values())

    def held(self) -> int:
        """Notes not yet committed and acks waiting for them: what ``max_held`` bounds."""
        return self.pending() + sum(p.committing + sum(len(h) for h in p.waiting.values())
                                    for p in self._parts.values())

    async def room(self) -> None:
        """Wait while ``max_held`` notes and acks are held (Kafka refuses transactions)."""
        while self.held() >= self._max_held:
            self._freed.clear()
            await self._freed.wait()

    async def drained(self, timeout: float = 10.0) -> None:
        """Wait until everything queued is committed and its acks released (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while any(p.pending or p.waiting or p.committing or p.checkpoint is None
                  for p in self._parts.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"notification relay not drained: {self.pending()} pending")
            await asyncio.sleep(0.002)

    def revoke(self, partitions: Iterable[int]) -> Awaitable[Any]:
        """The partitions were revoked: their notes and held acks are dropped at once (the
        new owner re-reads those events; a publish from now on starts the partition afresh);
        await the result for their transactions to be finished or aborted."""
        parts = [self._parts.pop(p) for p in set(partitions) if p in self._parts]
        self._freed.set()
        return asyncio.gather(*(self._drop(part) for part in parts))

    async def close(self) -> None:
        await self.revoke(list(self._parts))

    # -- the relay loop ----------------------------------------------------------------------

    def _part(self, number: int) -> _Partition:
        part = self._parts.get(number)
        if part is None:
            part = self._parts[number] = _Partition(number, self._open_log(number))
            part.task = asyncio.create_task(self._run(part), name=f"note-relay-{number}")
        return part

    def _clear(self, part: _Partition, match_id: str, seq: int) -> bool:
        """Nothing of the match at or before ``seq`` is still to be committed."""
        first = part.pending.get(match_id)
        if not first:
            return True
        return part.checkpoint is not None and first[0][0][0] > seq  # unknown until open

    async def _run(self, part: _Partition) -> None:
        """Serve the partition until it is revoked; re-open it after fencing or a failure
        (the relay must not die silently: its held acks would wait forever)."""
        pause = self._reopen_pause
        while True:
            try:
                await self._serve(part)
            except asyncio.CancelledError:
                raise
            except FencedError as exc:
                log.warning("notification relay fenced by another worker, re-opening",
                            extra={"partition": part.number, "error": str(exc)})
            except Exception:
                log.exception("notification relay failed, re-opening",
                              extra={"partition": part.number})
            part.checkpoint = None
            await self._close_log(part)
            await asyncio.sleep(pause)
            pause = min(pause * 2, max(self._retry_max, self._reopen_pause))
            part.log = self._open_log(part.number)

    async def _serve(self, part: _Partition) -> None:
        part.checkpoint = await self._retry(part, part.log.open, "open")
        for m, notes in list(part.pending.items()):  # queued while opening, or kept since
            cp = part.checkpoint.get(m, (0, -1))
            part.pending[m] = [(k, b) for k, b in notes if k > cp]
        await self._release(part, list(part.waiting))
        if part.pending:
            part.wake.set()
        while True:
            await part.wake.wait()
            wait = part.last_commit + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            part.wake.clear()
            part.last_commit = time.monotonic()
            await self._flush(part)

    async def _flush(self, part: _Partition) -> None:
        batch, part.pending = part.pending, {}
        batch = {m: notes for m, notes in batch.items() if notes}
        if not batch:
            return
        records = [(m, b) for m, notes in batch.items() for _, b in notes]
        marks = {m: notes[-1][0] for m, notes in batch.items()}
        started = time.perf_counter()
        part.committing = len(records)
        try:
            await self._retry(part, lambda: part.log.commit(records, marks), "commit")
        except BaseException:
            for m, notes in batch.items():  # put back in front of anything queued since
                part.pending[m] = notes + part.pending.get(m, [])
            raise
        finally:
            part.committing = 0
        elapsed = time.perf_counter() - started
        assert part.checkpoint is not None
        part.checkpoint.update(marks)
        if self._on_published is not None:
            self._on_published(len(records), elapsed)
        await self._release(part, list(batch))

    async def _release(self, part: _Partition, matches: list[str]) -> None:
        """Run the held acks of ``matches`` that nothing pending holds back any more."""
        for m in matches:
            heap = part.waiting.get(m)
            while heap and self._clear(part, m, heap[0][0]):
                try:
                    result = heapq.heappop(heap)[2]()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:  # one ack must not keep the others
                    log.exception("ack after a notification commit failed",
                                  extra={"match_id": m})
            if not heap:
                part.waiting.pop(m, None)
        self._freed.set()

    async def _retry(self, part: _Partition, call: Callable[[], Any], what: str) -> Any:
        """Run a blocking log call in a thread; transient failures are retried with backoff
        (the acks wait meanwhile, so nothing is lost), fencing is not."""
        delay = 0.05
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(part.thread, call)
            except FencedError:
                raise
            except Exception as exc:
                log.warning(f"notification relay {what} failed, retrying",
                            extra={"partition": part.number, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _close_log(self, part: _Partition) -> None:
        """Close in the partition's thread: after a call under way there (finished, not cut
        short); an open transaction is aborted."""
        try:
            await asyncio.get_running_loop().run_in_executor(part.thread, part.log.close)
        except Exception as exc:
            log.warning("notification relay close failed", extra={"error": str(exc)})

    async def _drop(self, part: _Partition) -> None:
        if self._parts.get(part.number) is part:
            del self._parts[part.number]
        if part.task is not None and part.task is not asyncio.current_task():
            part.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await part.task
        await self._close_log(part)
        part.thread.shutdown(wait=False)


# -- logs ------------------------------------------------------------------------------------


class InMemoryTxnLog:
    """One partition's log over a shared dict (tests): ``topic`` collects committed notes,
    ``checkpoints`` the committed marks; ``owner`` fences like a transactional id."""

    def __init__(self, shared: dict[str, Any], partition: int) -> None:
        self.shared, self.partition = shared, partition
        self.epoch = 0

    def open(self) -> dict[str, NoteKey]:
        owners = self.shared.setdefault("owners", {})
        self.epoch = owners[self.partition] = owners.get(self.partition, 0) + 1
        return dict(self.shared.setdefault("checkpoints", {}).get(self.partition, {}))

    def commit(self, notes: Sequence[tuple[str, bytes]], checkpoints: dict[str, NoteKey]) -> None:
        if self.shared["owners"][self.partition] != self.epoch:
            raise FencedError(f"partition {self.partition} opened by a newer owner")
        fail = self.shared.get("fail_commits", 0)
        if fail:
            self.shared["fail_commits"] = fail - 1
            raise RuntimeError("injected commit failure")
        self.shared["commits"] = self.shared.get("commits", 0) + 1
        self.shared.setdefault("topic", []).extend(notes)
        self.shared["checkpoints"].setdefault(self.partition, {}).update(checkpoints)

    def close(self) -> None:
        pass


class KafkaTxnLog:
    """Partition ``p``'s log on Kafka: producer ``stumpcast-notify-relay-{p}`` writes the notes
    to ``match.notifications`` (keyed by match) and checkpoints to partition ``p`` of
    ``match.notifications.relay``, in one transaction."""

    def __init__(self, kafka: Mapping[str, Any], partition: int,
                 transaction_timeout_ms: int = 10_000, call_timeout: float = 30.0,
                 txn_prefix: str = TXN_PREFIX) -> None:
        # ``kafka``: the client settings (runtime.kafka.client_config) of the streams principal
        self.kafka, self.partition, self.txn_prefix = kafka, partition, txn_prefix
        self.txn_timeout_ms, self.call_timeout = transaction_timeout_ms, call_timeout
        self.producer: Any = None
        self.initialised = False
        self.in_txn = False  # a commit that timed out is retried, not begun again

    def open(self) -> dict[str, NoteKey]:
        from confluent_kafka import Producer

        if self.producer is None:
            self.producer = Producer({
                **self.kafka,
                "transactional.id": f"{self.txn_prefix}-{self.partition}",
                "enable.idempotence": True, "acks": "all", "linger.ms": 0,
                "transaction.timeout.ms": self.txn_timeout_ms,
            })
        if not self.initialised:  # init_transactions may be retried after a timeout
            self._call(lambda: self.producer.init_transactions(self.call_timeout))
            self.initialised = True
        return read_checkpoints(self.kafka, self.partition, self.call_timeout)

    def commit(self, notes: Sequence[tuple[str, bytes]], checkpoints: dict[str, NoteKey]) -> None:
        from schemas.topology import NOTIFICATIONS, NOTIFY_RELAY

        p = self.producer

        def run() -> None:
            if not self.in_txn:
                p.begin_transaction()
                self.in_txn = True
                for match_id, value in notes:
                    p.produce(NOTIFICATIONS.name, key=match_id.encode(), value=value)
                for match_id, (seq, k) in checkpoints.items():
                    mark = contract.Checkpoint(match_id, seq, k)
                    p.produce(NOTIFY_RELAY.name, key=mark.key, value=mark.encode(),
                              partition=self.partition)
            p.commit_transaction(self.call_timeout)
            self.in_txn = False

        self._call(run)

    def _call(self, fn: Callable[[], None]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        try:
            fn()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                  KafkaError.INVALID_PRODUCER_EPOCH):
                    raise FencedError(str(err)) from exc
                if err.txn_requires_abort():
                    with contextlib.suppress(KafkaException):
                        self.producer.abort_transaction(self.call_timeout)
                    self.in_txn = False  # the retry begins a new transaction
                elif err.fatal():
                    raise FencedError(f"fatal producer error: {err}") from exc
            raise

    def close(self) -> None:
        """Abort an open transaction (the new owner's fencing would, later), then close."""
        from confluent_kafka import KafkaException

        if self.producer is not None:
            if self.in_txn:
                with contextlib.suppress(KafkaException):
                    self.producer.abort_transaction(min(self.call_timeout, 5.0))
                self.in_txn = False
            self.producer.flush(1.0)
            self.producer = None


def read_checkpoints(kafka: Mapping[str, Any], partition: int,
                     timeout: float = 30.0) -> dict[str, NoteKey]:
    """Every committed checkpoint in partition ``partition`` of the relay topic, read to its
    end (compacted: at most one record per match once cleaned)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from schemas.topology import NOTIFY_RELAY

    c = Consumer({**kafka, "group.id": f"{TXN_PREFIX}-reader",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    out: dict[str, NoteKey] = {}
    try:
        c.assign([TopicPartition(NOTIFY_RELAY.name, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {NOTIFY_RELAY.name}[{partition}] timed out")
            msg = c.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return out
                raise RuntimeError(f"reading {NOTIFY_RELAY.name}: {error}")
            key, value = msg.key(), msg.value()
            if key is not None and value is not None:
                mark = contract.decode(key, value)
                out[mark.match_id] = mark.position
    finally:
        c.close()
