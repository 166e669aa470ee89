"""Round trips through the real servers, with the clients the pipeline uses."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid

import pytest

from runtime import cassandra
from runtime.kafka import aiokafka_config
from runtime.redisconn import sync_redis
from schemas.access import Principal
from schemas.settings import Settings
from schemas.store_access import CassandraRole, RedisUser
from schemas.topology import EVENTS_TABLE, SMOKE, RedisKeys
from tests.kafka_access import admin_config

pytestmark = pytest.mark.stack


def test_kafka_confluent_produce_consume(kafka_stack: Settings) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    value = uuid.uuid4().bytes
    producer = Producer({**admin_config(kafka_stack), "acks": "all",
                         "enable.idempotence": True})
    reports: list[tuple[object, object]] = []
    producer.produce(SMOKE.name, key=b"test", value=value,
                     on_delivery=lambda err, msg: reports.append((err, msg)))
    assert producer.flush(30) == 0
    err, msg = reports[0]
    assert err is None
    consumer = Consumer({**admin_config(kafka_stack),
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(SMOKE.name, msg.partition(), msg.offset())])  # type: ignore[attr-defined]
        got = None
        for _ in range(30):
            got = consumer.poll(1.0)
            if got is not None and not got.error():
                break
        assert got is not None and got.value() == value and got.key() == b"test"
    finally:
        consumer.close()


async def test_kafka_aiokafka_produce_consume(kafka_stack: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    value = uuid.uuid4().bytes
    admin = aiokafka_config(kafka_stack, Principal.ADMIN)
    producer = AIOKafkaProducer(**admin, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(SMOKE.name, value, key=b"test-async")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**admin, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(SMOKE.name, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await consumer.getone()
        assert record.value == value and record.offset == meta.offset
    finally:
        await consumer.stop()


def test_cassandra_write_read(cassandra_stack: Settings) -> None:

    s = cassandra_stack
    table = f"{s.cassandra_keyspace}.{EVENTS_TABLE}"
    match_id = f"test-{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with cassandra.session(s, CassandraRole.ADMIN) as session:
        session.execute(f"INSERT INTO {table} (match_id, seq, event_id, type, ts, body) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (match_id, 7, "e7", "test", now, b"\x00body"))
        row = session.execute(f"SELECT seq, type, ts, body FROM {table} WHERE match_id = %s",
                              (match_id,)).one()
        session.execute(f"DELETE FROM {table} WHERE match_id = %s", (match_id,))
    assert (row.seq, row.type, bytes(row.body)) == (7, "test", b"\x00body")
    assert row.ts.replace(tzinfo=dt.UTC) == now


def test_redis_round_trip(redis_stack: Settings) -> None:

    client = sync_redis(redis_stack, RedisUser.ADMIN)
    key = RedisKeys.health("stack-test")
    try:
        client.set(key, b"alive", ex=30)
        assert client.get(key) == b"alive"
        assert 0 < client.ttl(key) <= 30
    finally:
        client.delete(key)
        client.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stumpcast", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_stack_up_twice_starts_nothing(stack: Settings) -> None:
    first, second = _cli("stack", "up"), _cli("stack", "up")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "starting" not in second.stdout
    assert second.stdout.count("already healthy") == 3


def test_stack_status_shows_port_pid_health(stack: Settings) -> None:
    out = _cli("stack", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    for server, port in (("kafka", stack.stack_kafka_port),
                         ("cassandra", stack.stack_cassandra_port),
                         ("redis", stack.stack_redis_port)):
        line = next(x for x in out.stdout.splitlines() if f" {server} " in x)
        assert str(port) in line and "healthy" in line
    assert _cli("stack", "status", "--quiet").stdout == ""
