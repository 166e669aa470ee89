"""The worker's edges to the rest of stumpcast: the scorecard (Redis), markers and segment
events (Kafka). Foreign errors are logged and counted here; the video never waits on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from media.metrics import MediaMetrics
from media.publisher import atomic_write
from runtime import redisconn
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


async def scorebug_loop(redis_url: str, redis_auth: tuple[str, str] | None, match_id: str,
                        path: Path, stop: asyncio.Event, metrics: MediaMetrics,
                        interval: float = 1.0, cluster: tuple[str, ...] = ()) -> None:
    """Poll the card; rewrite the drawtext file atomically (``reload=1`` reads it per frame).
    ``cluster``: Redis Cluster seed nodes (the card's key carries its match's hash tag)."""
    client = redisconn.connect(redis_url, redis_auth, asyncio=True, socket_timeout=2,
                               cluster=cluster)
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


def marker_start_ms(now_ms: int, window_ms: int, oldest_pdt_ms: int | None) -> int:
    """The oldest instant still inside the playlist window, which is as far back as a marker
    can still be placed (``media.markers.place`` drops older ones): a full window back from
    now, or the oldest segment still listed, if that is older (a restarted worker). Pure."""
    start = now_ms - window_ms
    return start if oldest_pdt_ms is None else min(start, oldest_pdt_ms)


class MarkerFeed:
    """One match's notifications, polled without blocking the event loop.

    The topic is keyed by match id and written by the relay with librdkafka's default
    partitioner, so the match's notifications are all in one partition
    (``topology.partition_for``). The feed assigns only that partition, from the first record
    at or after ``start_ms`` (ListOffsets by timestamp) or from its group's committed offset
    if that is later (resume by position). Other matches' records there are skipped by key,
    never decoded. Finding the position asks the broker (metadata, ListOffsets, committed
    offsets), so it runs in a thread of its own: ``poll`` returns nothing until it is done and
    tries again ``retry`` seconds after a failure (the broker is down, the topic missing).
    """

    def __init__(self, kafka: Mapping[str, Any], match_id: str, metrics: MediaMetrics,
                 start_ms: int, topic: str = topology.NOTIFICATIONS.name, timeout: float = 5.0,
                 retry: float = 5.0) -> None:
        from confluent_kafka import Consumer

        self.metrics, self.topic, self.start_ms = metrics, topic, start_ms
        self.key = match_id.encode()
        self.timeout, self.retry = timeout, retry
        # One group per match: its committed offset is this match's position in its partition.
        self.consumer = Consumer({
            **kafka,  # the media principal's client settings (runtime.kafka)
            "group.id": topology.media_markers_group(match_id),
            # Only if the position found is out of range (retention deleted it).
            "auto.offset.reset": "earliest", "enable.auto.commit": True})
        self.assigned: Any = None  # the TopicPartition being read, once positioned
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="marker-seek")
        self._seek: Future[Any] | None = None
        self._retry_at = 0.0

    def position(self) -> Any:
        """Where to read from: the match's partition and offset. Blocks (broker calls)."""
        from confluent_kafka import KafkaException, TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=self.timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            why = meta.error if meta is not None else "not in the metadata"
            raise RuntimeError(f"{self.topic}: no partitions ({why})")
        partition = topology.partition_for(self.key, len(meta.partitions))
        tp = TopicPartition(self.topic, partition)
        by_time = self.consumer.offsets_for_times(
            [TopicPartition(self.topic, partition, self.start_ms)], timeout=self.timeout)[0]
        if by_time.error is not None:
            raise KafkaException(by_time.error)
        offset = by_time.offset
        if offset < 0:  # nothing at or after start_ms: from the end of the partition
            offset = self.consumer.get_watermark_offsets(tp, timeout=self.timeout)[1]
        committed = self.consumer.committed([tp], timeout=self.timeout)[0]
        # No committed offset reads as OFFSET_INVALID (-1001): the time wins.
        return TopicPartition(self.topic, partition, max(offset, committed.offset))

    def _positioned(self) -> bool:
        """Start, check or retry the positioning; True once the partition is assigned."""
        if self.assigned is not None:
            return True
        if self._seek is None:
            if time.monotonic() >= self._retry_at:
                self._seek = self._pool.submit(self.position)
            return False
        if not self._seek.done():
            return False
        seek, self._seek = self._seek, None
        try:
            tp = seek.result()
        except Exception as exc:
            self.metrics.errors.labels("kafka_seek").inc()
            log.warning("marker feed not positioned; retrying",
                        extra={"topic": self.topic, "error": str(exc)})
            self._retry_at = time.monotonic() + self.retry
            return False
        self.consumer.assign([tp])
        self.assigned = tp
        log.info("marker feed positioned", extra={"topic": tp.topic, "partition": tp.partition,
                                                  "offset": tp.offset})
        return True

    def poll(self) -> list[Notification]:
        out: list[Notification] = []
        if not self._positioned():
            return out
        for msg in self.consumer.consume(num_messages=500, timeout=0):
            if msg.error():
                self.metrics.errors.labels("kafka_consume").inc()
                continue
            if msg.key() != self.key:
                continue  # another match sharing the partition
            try:
                out.append(decode(msg.value() or b""))
            except NotificationError as exc:
                self.metrics.errors.labels("bad_notification").inc()
                log.warning("bad notification skipped", extra={"error": str(exc)})
        return out

    def close(self) -> None:
        """Blocks: waits for a positioning under way, commits the position, leaves."""
        self._pool.shutdown(wait=True)
        self.consumer.close()


class SegmentSink:
    """One ``media.segments`` record per published segment, keyed by match id."""

    def __init__(self, kafka: Mapping[str, Any], metrics: MediaMetrics) -> None:
        from confluent_kafka import Producer

        self.metrics = metrics
        self.producer = Producer({**kafka, "linger.ms": 5,
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
