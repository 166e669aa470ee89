"""The media worker's marker feed: one match's partition of ``match.notifications``, from the
oldest instant its playlist window still shows (or its committed position, if later)."""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from media.feeds import MarkerFeed, marker_start_ms
from media.metrics import MediaMetrics
from media.playlist import format_pdt
from runtime.kafka import client_config
from schemas import topology
from schemas.access import Principal
from schemas.notifications import Kind, Notification, Priority
from tests.kafka_access import admin_config, granted, service_access

PARTITIONS = 8


def _errors(metrics: MediaMetrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("stumpcast_media_errors_total", {"kind": kind})
    return value or 0.0


# -- pure ---------------------------------------------------------------------------------


def test_partition_for_is_crc32_of_the_key() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the standard CRC-32 check value
    assert topology.partition_for(b"123456789", 8) == 0xCBF43926 % 8
    assert topology.partition_for(b"ipl-2024-final", 1) == 0
    with pytest.raises(ValueError):
        topology.partition_for(b"", 8)


def test_start_is_a_full_window_back_or_the_oldest_listed_segment() -> None:
    now, window = 10_000_000, 900_000
    assert marker_start_ms(now, window, None) == now - window
    assert marker_start_ms(now, window, now - 60_000) == now - window  # a young window
    assert marker_start_ms(now, window, now - 2_000_000) == now - 2_000_000  # after a restart


def test_feed_never_blocks_while_the_broker_is_unreachable() -> None:
    metrics = MediaMetrics()
    feed = MarkerFeed({"bootstrap.servers": "127.0.0.1:1"}, "m-down", metrics, start_ms=0,
                      topic="stumpcast.nowhere", timeout=0.3, retry=0.1)
    slowest, deadline = 0.0, time.monotonic() + 2.0
    try:
        while time.monotonic() < deadline:
            began = time.monotonic()
            assert feed.poll() == []
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.02)
    finally:
        feed.close()
    assert slowest < 0.1
    assert feed.assigned is None
    assert _errors(metrics, "kafka_seek") >= 2  # failed, and tried again


# -- on the real Kafka ----------------------------------------------------------------------


@pytest.fixture
def topic(kafka_stack: Any) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(kafka_stack))
    name = f"stumpcast.test.notifications.{uuid.uuid4().hex[:8]}"
    for fut in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        fut.result(30)
    # The feed reads as the media principal: what an operator grants it on this topic.
    with granted(kafka_stack, service_access(Principal.MEDIA, read=[name])):
        yield name
    for fut in admin.delete_topics([name]).values():
        fut.result(30)


def _producer(admin: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    # The relay's producer settings (streams/relay.py, KafkaTxnLog) without the transaction:
    # no "partitioner", so librdkafka's default.
    return Producer({**admin, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 0})


def _note(match_id: str, n: int, at_ms: int) -> Notification:
    return Notification(id=f"{match_id}:{n}", match_id=match_id, kind=Kind.FOUR,
                        priority=Priority.P2, ts=format_pdt(at_ms), seq=n, innings=1,
                        over=f"{n}.1", text=f"four at ball {n}")


def _send(producer: Any, topic: str, records: list[tuple[str, bytes, int]]) -> None:
    for key, value, at_ms in records:
        producer.produce(topic, key=key.encode(), value=value, timestamp=at_ms)
    assert producer.flush(30) == 0


def _same_partition(match_id: str, tag: str, count: int) -> list[str]:
    want = topology.partition_for(match_id.encode(), PARTITIONS)
    found = (f"other-{i}-{tag}" for i in range(10_000))
    same = (m for m in found if topology.partition_for(m.encode(), PARTITIONS) == want)
    return [next(same) for _ in range(count)]


def _other_partitions(match_id: str, tag: str) -> list[str]:
    """One match id in every other partition."""
    want = topology.partition_for(match_id.encode(), PARTITIONS)
    by_partition: dict[int, str] = {}
    for i in range(10_000):
        m = f"elsewhere-{i}-{tag}"
        by_partition.setdefault(topology.partition_for(m.encode(), PARTITIONS), m)
    return [m for p, m in sorted(by_partition.items()) if p != want]


def _drain(feed: MarkerFeed, want: int, timeout: float = 20.0, idle: float = 1.5
           ) -> list[Notification]:
    """Poll until ``want`` notifications came, then ``idle`` seconds more (nothing else may)."""
    out: list[Notification] = []
    deadline, enough_at = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        began = time.monotonic()
        out += feed.poll()
        assert time.monotonic() - began < 0.5, "poll blocked"
        if len(out) >= want:
            enough_at = enough_at or time.monotonic()
            if time.monotonic() - enough_at > idle:
                break
        time.sleep(0.05)
    return out


def _delete_group(admin_conf: dict[str, Any], match_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_conf)
    for fut in admin.delete_consumer_groups([topology.media_markers_group(match_id)]).values():
        fut.result(30)


@pytest.mark.stack
def test_relay_partitioner_places_a_key_where_partition_for_says(kafka_stack: Any,
                                                                   topic: str) -> None:
    producer = _producer(admin_config(kafka_stack))
    placed: dict[str, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None
        placed[msg.key().decode()] = msg.partition()

    keys = [f"match-{i}-{uuid.uuid4().hex[:6]}" for i in range(64)]
    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"x", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert placed == {k: topology.partition_for(k.encode(), PARTITIONS) for k in keys}
    assert len(set(placed.values())) > 1


@pytest.mark.stack
def test_feed_reads_its_match_from_the_start_time_in_one_partition(
        kafka_stack: Any, topic: str, caplog: pytest.LogCaptureFixture) -> None:
    """Fails on the old feed, which subscribed to every partition from the earliest offset:
    it returned this match's notifications from before the start time and logged "bad
    notification skipped" for the other matches' garbage."""
    caplog.set_level(logging.INFO, logger="stumpcast.media.feeds")
    bootstrap, tag = admin_config(kafka_stack), uuid.uuid4().hex[:8]
    media = client_config(kafka_stack, Principal.MEDIA)
    match_id = f"feed-{tag}"
    neighbours = _same_partition(match_id, tag, 2)
    elsewhere = _other_partitions(match_id, tag)
    now = int(time.time() * 1000)
    start, before, after = now - 60_000, now - 90_000, now - 30_000
    old = [_note(match_id, n, before + n) for n in (1, 2)]
    new = [_note(match_id, n, after + n) for n in (3, 4, 5)]
    records = [(match_id, note.encode(), before + i) for i, note in enumerate(old)]
    records += [(m, b"left behind by another run", before) for m in neighbours + elsewhere]
    records += [(m, b"\xff garbage", after) for m in neighbours + elsewhere]
    records += [(m, _note(m, 1, after).encode(), after) for m in neighbours + elsewhere]
    records += [(match_id, note.encode(), after + i) for i, note in enumerate(new)]
    _send(_producer(bootstrap), topic, records)

    metrics = MediaMetrics()
    feed = MarkerFeed(media, match_id, metrics, start_ms=start, topic=topic)
    try:
        got = _drain(feed, len(new))
        assignment = [(tp.topic, tp.partition) for tp in feed.consumer.assignment()]
    finally:
        feed.close()
        _delete_group(bootstrap, match_id)

    assert [n.id for n in got] == [n.id for n in new]
    assert assignment == [(topic, topology.partition_for(match_id.encode(), PARTITIONS))]
    assert not [r for r in caplog.records if r.getMessage() == "bad notification skipped"]
    assert _errors(metrics, "bad_notification") == 0


@pytest.mark.stack
def test_feed_counts_and_logs_a_bad_record_of_its_own_match(
        kafka_stack: Any, topic: str, caplog: pytest.LogCaptureFixture) -> None:
    bootstrap, match_id = admin_config(kafka_stack), f"feed-{uuid.uuid4().hex[:8]}"
    media = client_config(kafka_stack, Principal.MEDIA)
    now = int(time.time() * 1000)
    good = _note(match_id, 1, now)
    _send(_producer(bootstrap), topic, [(match_id, b"{not json", now), (match_id,
                                                                        good.encode(), now)])
    metrics = MediaMetrics()
    feed = MarkerFeed(media, match_id, metrics, start_ms=now - 60_000, topic=topic)
    try:
        got = _drain(feed, 1)
    finally:
        feed.close()
        _delete_group(bootstrap, match_id)
    assert [n.id for n in got] == [good.id]
    assert _errors(metrics, "bad_notification") == 1
    assert [r.getMessage() for r in caplog.records  # INFO lines depend on earlier tests' set-up
            if r.name == "stumpcast.media.feeds" and r.levelno >= logging.WARNING] == [
        "bad notification skipped"]


@pytest.mark.stack
def test_feed_resumes_from_its_committed_position(kafka_stack: Any, topic: str) -> None:
    """A restarted worker with the same start time does not re-read what it already read."""
    bootstrap, match_id = admin_config(kafka_stack), f"feed-{uuid.uuid4().hex[:8]}"
    media = client_config(kafka_stack, Principal.MEDIA)
    producer = _producer(bootstrap)
    now = int(time.time() * 1000)
    first = [_note(match_id, n, now - 10_000 + n) for n in (1, 2)]
    _send(producer, topic, [(match_id, n.encode(), now - 10_000 + i) for i, n in enumerate(first)])
    try:
        feed = MarkerFeed(media, match_id, MediaMetrics(), start_ms=now - 60_000, topic=topic)
        try:
            assert [n.id for n in _drain(feed, 2, idle=0.5)] == [n.id for n in first]
        finally:
            feed.close()  # commits the position
        later = _note(match_id, 3, now)
        _send(producer, topic, [(match_id, later.encode(), now)])
        again = MarkerFeed(media, match_id, MediaMetrics(), start_ms=now - 60_000,
                           topic=topic)
        try:
            assert [n.id for n in _drain(again, 1)] == [later.id]
            assert again.assigned.offset == 2  # the committed offset, not the time's (0)
        finally:
            again.close()
    finally:
        _delete_group(bootstrap, match_id)

