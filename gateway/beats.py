"""Viewers' heartbeats, received over the WebSocket, forwarded to ``viewer.heartbeats``.

Players (the live page, ``stumpcast watch``) already hold a gateway connection, so they send
their heartbeat on it instead of opening another one. The gateway stamps the receipt time,
encodes the record once with the heartbeat contract, and hands it to a confluent-kafka
producer keyed by session (a session's beats stay on one partition). ``produce`` never blocks
the event loop: the producer's queue is bounded, and when it is full the beat is dropped and
counted. Heartbeats are telemetry sampled every few seconds; one lost beat only shortens a
session's presence until its next one, and the analytics windows span two intervals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from schemas.heartbeats import Heartbeat
from schemas.topology import VIEWER_HEARTBEATS

QUEUE_MAX = 100_000


class HeartbeatForwarder:
    def __init__(self, kafka: Mapping[str, Any] | None) -> None:
        self.kafka = kafka  # client settings of the gateway principal (runtime.kafka)
        self._producer: Any = None
        self.forwarded = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self.kafka)

    def forward(self, fields: dict[str, Any], now_ms: int | None = None) -> bool:
        """Stamp, encode and queue one beat; False if it had to be dropped."""
        if not self.enabled:
            return False
        beat = Heartbeat(**fields, ts_ms=now_ms if now_ms is not None else int(time.time() * 1000))
        producer = self._ensure()
        try:
            producer.produce(VIEWER_HEARTBEATS.name, key=beat.key, value=beat.encode())
        except BufferError:
            self.dropped += 1
            return False
        producer.poll(0)  # serve delivery callbacks without waiting
        self.forwarded += 1
        return True

    def _ensure(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({
                **(self.kafka or {}), "linger.ms": 20,
                "queue.buffering.max.messages": QUEUE_MAX, "acks": 1,
                "partitioner": "murmur2_random"})
        return self._producer

    def close(self, timeout: float = 2.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
