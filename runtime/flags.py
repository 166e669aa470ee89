"""Writing and reading flag changes: Kafka first (the audit trail), then the Redis projection.

Used by ``stumpcast flags``, the degradation controller and ``stumpcast bench flags``; the
gateway only reads Redis (``gateway.flags``). A change is produced to ``stumpcast.flags`` as the
``flags`` principal and acknowledged by the broker (``acks=all``, idempotent) before anything
else; its offset becomes its version, and ``schemas.flags.APPLY_LUA`` writes it to Redis only
if newer. If Redis is down after Kafka took the change, the change is not lost:
``FlagStore.sync()`` replays the topic into Redis (``stumpcast flags sync``).
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from typing import Any

from runtime.kafka import client_config
from schemas.access import Principal
from schemas.flags import (
    APPLY_LUA,
    FLAGS_KEY,
    FLAGS_LOG_KEY,
    FLAGS_TOPIC,
    LOG_MAXLEN,
    FlagChange,
    FlagError,
    FlagState,
    decode,
    states_of,
)
from schemas.settings import Settings
from schemas.topology import FLAGS_GROUP_PREFIX


class FlagWriteFailed(RuntimeError):
    """Kafka did not take the change (nothing was changed anywhere)."""


def operator() -> str:
    """Who, for the audit trail: the operator's login and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class FlagStore:
    def __init__(self, settings: Settings, redis: Any = None) -> None:
        from runtime.redisconn import sync_redis
        from schemas.store_access import RedisUser

        self.settings = settings
        self.redis = redis if redis is not None else sync_redis(
            settings, RedisUser.FLAGS, socket_timeout=5, socket_connect_timeout=3)
        self._apply = self.redis.register_script(APPLY_LUA)
        self._producer: Any = None

    def _kafka(self) -> dict[str, Any]:
        return client_config(self.settings, Principal.FLAGS)

    def connect(self, timeout: float = 15.0) -> None:
        """The producer, connected (metadata fetched): long-lived writers (the controller, the
        bench) call this once so that a change costs one acknowledged produce, not a connect."""
        producer = self._ensure_producer()
        producer.list_topics(FLAGS_TOPIC.name, timeout=timeout)

    def _ensure_producer(self) -> Any:
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer({**self._kafka(), "acks": "all",
                                       "enable.idempotence": True, "linger.ms": 0})
        return self._producer

    def write(self, change: FlagChange, timeout: float = 15.0) -> FlagChange:
        """Kafka (acknowledged), then Redis; returns the change with its version."""
        from confluent_kafka import KafkaException

        self._ensure_producer()
        result: dict[str, Any] = {}

        def done(err: Any, msg: Any) -> None:
            result["err"], result["offset"] = err, None if err else msg.offset()

        try:
            self._producer.produce(FLAGS_TOPIC.name, key=change.flag.encode(),
                                   value=change.encode(), on_delivery=done)
        except (KafkaException, BufferError) as exc:
            raise FlagWriteFailed(f"kafka: {exc}") from None
        deadline = time.monotonic() + timeout
        while "err" not in result and time.monotonic() < deadline:
            self._producer.poll(0.05)
        if "err" not in result or result["err"] is not None:
            raise FlagWriteFailed(f"kafka did not acknowledge the change within {timeout:g} s: "
                                  f"{result.get('err') or 'timeout'}")
        written = change.with_version(int(result["offset"]))
        self.project(written)
        return written

    def project(self, change: FlagChange) -> bool:
        """Redis: the current state and the change stream; False when already newer there."""
        return bool(self._apply(keys=[FLAGS_KEY, FLAGS_LOG_KEY],
                                args=[change.flag, change.version, change.encode(),
                                      LOG_MAXLEN]))

    def current(self) -> dict[str, tuple[int, FlagState]]:
        return states_of(self.redis.hgetall(FLAGS_KEY))

    def current_changes(self) -> dict[str, FlagChange]:
        out = {}
        for raw in self.redis.hgetall(FLAGS_KEY).values():
            try:
                change = decode(raw)
            except FlagError:
                continue
            out[change.flag] = change
        return out

    def history(self, flag: str | None = None, limit: int = 50,
                timeout: float = 10.0) -> list[FlagChange]:
        """The changes on the topic (oldest first), from its start: the audit trail."""
        changes = [c for c in self._read_topic(timeout) if flag is None or c.flag == flag]
        return changes[-limit:] if limit else changes

    def sync(self, timeout: float = 10.0) -> int:
        """Replay the topic into Redis (after Redis lost its copy); returns how many applied."""
        return sum(self.project(c) for c in self._read_topic(timeout))

    def _read_topic(self, timeout: float) -> list[FlagChange]:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({**self._kafka(), "group.id": f"{FLAGS_GROUP_PREFIX}{os.getpid()}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            tp = TopicPartition(FLAGS_TOPIC.name, 0)
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            consumer.assign([TopicPartition(FLAGS_TOPIC.name, 0, OFFSET_BEGINNING)])
            out: list[FlagChange] = []
            deadline = time.monotonic() + timeout
            last = -1
            while last < high - 1 and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.5):
                    if msg.error():
                        continue
                    last = int(msg.offset() or 0)
                    try:
                        out.append(decode(msg.value() or b"").with_version(last))
                    except FlagError:
                        continue  # not ours to judge here: history shows what it can read
            return out
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
        self.redis.close()
