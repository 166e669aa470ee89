"""``stumpcast chaos``: the WebSocket clients and what the stores and Kafka hold, read back
(the shell around ``bench.chaos_core`` that needs no part of the local stack; the services,
the faults and the rounds are in ``stumpcast.stack.chaos``)."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import threading
import time
from typing import Any

import orjson

from bench.chaos_core import ChaosError
from schemas.settings import Settings
from schemas.store_access import CassandraRole, RedisUser
from schemas.topology import MATCH_EVENTS_DLQ, NOTIFICATIONS, RedisKeys


class Clients:
    """The load clients (``bench.gateway.loadclient`` processes) through HAProxy, reconnecting
    by position, with receipt times per (match, seq)."""

    def __init__(self, settings: Settings, procs: int) -> None:
        from bench.gateway import loadclient

        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=loadclient.main,
                               args=(child, settings.stack_lb_port, settings), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(self, cmd: str, arg: Any = None, per_proc: list[Any] | None = None) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            pipe.send((cmd, per_proc[i] if per_proc is not None else arg))
        return [pipe.recv() for pipe in self.pipes]

    def connect(self, n: int, matches: list[str]) -> None:
        k = len(self.pipes)
        shares = [[matches[i % len(matches)] for i in range(j, n, k)] for j in range(k)]
        self.call("chaos", True)
        self.call("connect", None, [{"matches": s, "rate": 1500.0} for s in shares])

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("abort", None))
                pipe.recv()
                pipe.send(("exit", None))
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


class CardClients:
    """Clients that keep the whole card (``gateway.client``: snapshot plus patches), one per
    match through HAProxy, so the card a viewer sees is compared with the fold, not only its
    position (the load clients read only the head of each message, to stay cheap)."""

    def __init__(self, settings: Settings, matches: list[str]) -> None:
        from gateway.client import GatewayClient

        url = f"ws://127.0.0.1:{settings.stack_lb_port}/ws"
        self.clients = {m: GatewayClient(url, [f"match:{m}"], base=0.1, cap=1.0)
                        for m in matches}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(self._follow(c), self.loop)
                      for c in self.clients.values()]

    @staticmethod
    async def _follow(client: Any) -> None:
        async for _ in client.events():
            pass

    def cards(self) -> dict[str, Any]:
        return {m: c.state.channels[f"match:{m}"].card for m, c in self.clients.items()}

    def stop(self) -> None:
        async def cancel() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def kafka_admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    from runtime.kafka import client_config
    from schemas.access import Principal

    return {**client_config(settings, Principal.ADMIN), **extra}


def end_offsets(settings: Settings, topic: str, attempts: int = 10) -> dict[int, int]:
    """The end offset of each partition. A leader that moved (a broker paused by the last
    round) answers NOT_LEADER until the client's metadata catches up: asked again, 1 s on."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    moved = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}
    c = Consumer(kafka_admin_config(settings, **{"group.id": "unused"}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        for attempt in range(1, attempts + 1):
            try:
                return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                        for p in parts}
            except KafkaException as exc:
                err = exc.args[0]
                if attempt == attempts or not (err.retriable() or err.code() in moved):
                    raise
                time.sleep(1.0)
        raise AssertionError("unreachable")
    finally:
        c.close()


def read_since(settings: Settings, topic: str, since: dict[int, int],
               timeout: float = 30) -> list[tuple[str, bytes]]:
    """Every committed (key, value) written to ``topic`` after ``since``, to the end of each
    partition (read_committed: aborted transactions are never delivered)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer(kafka_admin_config(settings, **{
        "group.id": "unused", "enable.auto.commit": False, "isolation.level": "read_committed",
        "enable.partition.eof": True}))
    c.assign([TopicPartition(topic, p, o) for p, o in since.items()])
    out: list[tuple[str, bytes]] = []
    left = set(since)
    deadline = time.monotonic() + timeout
    try:
        while left:
            if time.monotonic() > deadline:
                raise ChaosError(f"timed out reading {topic}")
            msg = c.poll(1)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise ChaosError(f"reading {topic}: {error}")
                left.discard(msg.partition())
                continue
            out.append(((msg.key() or b"").decode(), msg.value() or b""))
    finally:
        c.close()
    return out


def offsets_now(settings: Settings) -> dict[str, dict[int, int]]:
    return {t: end_offsets(settings, t) for t in (NOTIFICATIONS.name, MATCH_EVENTS_DLQ.name)}


def redis_views(settings: Settings, matches: list[str]) -> dict[str, tuple[int, Any]]:
    """match -> (view seq, card) from the Redis Cluster."""
    from runtime.redisconn import sync_redis

    r: Any = sync_redis(settings, RedisUser.ADMIN, socket_timeout=5)
    try:
        out = {}
        for m in matches:
            seq = int(r.hget(RedisKeys.position(m), "seq") or 0)
            out[m] = (seq, orjson.loads(r.get(RedisKeys.card(m)) or b"null"))
        return out
    finally:
        r.close()


def stored_events(settings: Settings, matches: list[str]) -> dict[str, list[Any]]:
    """match -> its events in the event store, read at QUORUM (a majority of the 3 replicas)."""
    from runtime import cassandra
    from schemas import codec
    from schemas.topology import EVENTS_TABLE

    quorum = dataclasses.replace(settings, cassandra_consistency="QUORUM")
    with cassandra.session(quorum, CassandraRole.ADMIN) as s:
        return {m: [codec.decode(bytes(r.body)) for r in s.execute(
            f"SELECT body FROM {settings.cassandra_keyspace}.{EVENTS_TABLE} "
            "WHERE match_id = %s", (m,), timeout=30)] for m in matches}
