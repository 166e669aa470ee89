"""The worker's edges to the rest of stumpcast: the scorecard (Redis), markers and segment
events (Kafka). Foreign errors are logged and counted here; the video never waits on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from media.metrics import MediaMetrics
from media.publisher import atomic_write
from schemas import topology
from schemas.media import SegmentPublished
from schemas.notifications import Notification, NotificationError, decode

log = logging.getLogger("stumpcast.media.feeds")


def scorebug_text(card: Mapping[str, Any] | None) -> str:
    """One line for the burned-in score bug, from the scorecard document. Pure."""
    if not card:
        return "stumpcast"
    teams = card.get("teams") or []
    innings = card.get("innings") or []
    head = " v ".join(str(t) for t in teams) if teams else "stumpcast"
    if not innings:
        return head
    cur = innings[-1]
    wickets = cur.get("wickets", 0)
    score = f"{cur.get('runs', 0)}" + (f"/{wickets}" if wickets != 10 else "")
    return f"{cur.get('batting_team', '?')} {score} ({cur.get('overs', '0')} ov)  {head}"


async def scorebug_loop(redis_url: str, match_id: str, path: Path, stop: asyncio.Event,
                        metrics: MediaMetrics, interval: float = 1.0) -> None:
    """Poll the card; rewrite the drawtext file atomically (``reload=1`` reads it per frame)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url, socket_timeout=2)
    last = None
    try:
        while not stop.is_set():
            try:
                raw = await client.get(topology.RedisKeys.card(match_id))
                text = scorebug_text(orjson.loads(raw) if raw else None)
            except Exception as exc:  # redis down or a bad document: keep the last text
                metrics.errors.labels("scorecard").inc()
                log.debug("scorecard read failed", extra={"error": str(exc)})
                text = last or "stumpcast"
            if text != last:
                atomic_write(path, text.encode())
                last = text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await client.aclose()


class MarkerFeed:
    """Notifications from ``match.notifications``, polled without blocking the event loop."""

    def __init__(self, bootstrap: str, match_id: str, metrics: MediaMetrics) -> None:
        from confluent_kafka import Consumer

        self.metrics = metrics
        # One group per match: each worker follows its own match and must see every partition.
        # A shared group would split the partitions between workers of different matches.
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": topology.media_markers_group(match_id),
            # earliest: a new worker catches up on markers still inside its playlist window.
            "auto.offset.reset": "earliest", "enable.auto.commit": True})
        self.consumer.subscribe([topology.NOTIFICATIONS.name])

    def poll(self) -> list[Notification]:
        out: list[Notification] = []
        for msg in self.consumer.consume(num_messages=500, timeout=0):
            if msg.error():
                self.metrics.errors.labels("kafka_consume").inc()
                continue
            try:
                out.append(decode(msg.value() or b""))
            except NotificationError as exc:
                self.metrics.errors.labels("bad_notification").inc()
                log.warning("bad notification skipped", extra={"error": str(exc)})
        return out

    def close(self) -> None:
        self.consumer.close()


class SegmentSink:
    """One ``media.segments`` record per published segment, keyed by match id."""

    def __init__(self, bootstrap: str, metrics: MediaMetrics) -> None:
        from confluent_kafka import Producer

        self.metrics = metrics
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                  "message.timeout.ms": 30000})

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.metrics.errors.labels("kafka_produce").inc()

    def send(self, events: Sequence[SegmentPublished]) -> None:
        for event in events:
            try:
                self.producer.produce(topology.MEDIA_SEGMENTS.name, key=event.match_id,
                                      value=event.encode(), on_delivery=self._delivered)
            except BufferError:
                self.metrics.errors.labels("kafka_produce").inc()
        self.producer.poll(0)

    def close(self) -> None:
        self.producer.flush(5)
