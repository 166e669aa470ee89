"""Three KRaft brokers (`stack up --nodes 3`'s Kafka): every topic with 3 replicas and
min.insync.replicas 2, and acks=all writes that survive a SIGKILL of the active controller.

The brokers are the session's `stack up --nodes 3` (the ``nodes3`` fixture, shared with the
other multi-node tests); a test that kills or stops one brings it back.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from schemas.settings import Settings
from schemas.topology import TOPICS
from stumpcast.stack import control
from stumpcast.stack.kafka_cluster import NODE_TYPES, active_controller
from stumpcast.stack.procs import ProcRecord
from tests.kafka_access import admin_config
from tests.multinode import MultiNode

pytestmark = [pytest.mark.stack, pytest.mark.slow]
NODES = list(NODE_TYPES)


@pytest.fixture(scope="module")
def brokers(nodes3: MultiNode) -> Settings:
    return nodes3.settings


def test_every_topic_has_three_replicas_and_needs_two_in_sync(brokers: Settings) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(admin_config(brokers))
    meta = admin.list_topics(timeout=20)
    assert sorted(meta.brokers) == [1, 2, 3]
    for topic in TOPICS:
        parts = meta.topics[topic.name].partitions.values()
        assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in parts), topic.name
    resources = [ConfigResource("topic", t.name) for t in TOPICS]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result()["min.insync.replicas"].value == "2", resource.name


def test_acks_all_writes_survive_a_killed_active_controller(brokers: Settings) -> None:
    """SIGKILL the node that is the active controller (and a broker) while an idempotent
    producer writes with acks=all: every message is delivered exactly once, and production
    resumes within the broker session timeout (6 s) plus elections."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"test.kafka3.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(admin_config(brokers))
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
    producer = Producer(admin_config(brokers, **{"enable.idempotence": True, "acks": "all",
                                                 "linger.ms": 5}))
    delivered: list[float] = []

    def done(err: object, _msg: object) -> None:
        assert err is None, err
        delivered.append(time.monotonic())

    controller = active_controller(brokers)
    assert controller in (1, 2, 3)
    record = ProcRecord.load(control.RunLayout.at(brokers.run_dir).pid_record(
        f"kafka-{controller}"))
    assert record is not None
    sent, killed = 0, 0.0
    try:
        for i in range(600):  # ~30 s at 20 ms
            producer.produce(topic, key=str(i % 7), value=str(i), on_delivery=done)
            sent += 1
            if i == 100:
                producer.flush(30)
                os.kill(record.pid, signal.SIGKILL)
                killed = time.monotonic()
            producer.poll(0.02)
        assert producer.flush(60) == 0
    finally:
        control.up(brokers, NODES, say=lambda _: None)  # the dead node back
    after = sorted(t - killed for t in delivered if t > killed)
    gaps = [b - a for a, b in zip([0.0, *after], after, strict=False)]
    print(f"active controller kafka-{controller} killed; longest pause in deliveries "
          f"{max(gaps):.1f} s; {len(delivered)} of {sent} delivered")
    assert len(delivered) == sent
    consumer = Consumer(admin_config(brokers, **{"group.id": f"test-{uuid.uuid4().hex[:6]}",
                                                 "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while len(seen) < sent and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            seen.append(msg.value().decode())
    consumer.close()
    admin.delete_topics([topic])
    assert sorted(seen, key=int) == [str(i) for i in range(sent)]  # each exactly once
    assert max(gaps) < 30


def test_a_broker_stopped_past_its_session_timeout_then_resumed(brokers: Settings) -> None:
    """SIGSTOP a broker for 10 s (its session timeout is 6 s: it is fenced and its partitions
    move), then SIGCONT: it rejoins, and an acks=all producer delivered everything once."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"test.kafka3.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(admin_config(brokers))  # kept: a collected handle fails its futures
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
    producer = Producer(admin_config(brokers, **{"enable.idempotence": True, "acks": "all",
                                                 "linger.ms": 5}))
    delivered: list[float] = []
    errors: list[object] = []

    def done(err: object, _msg: object) -> None:
        (errors if err is not None else delivered).append(err or time.monotonic())

    record = ProcRecord.load(control.RunLayout.at(brokers.run_dir).pid_record("kafka-2"))
    assert record is not None
    sent = 0
    for i in range(700):  # ~14 s at 20 ms
        producer.produce(topic, value=str(i), on_delivery=done)
        sent += 1
        if i == 50:
            producer.flush(30)
            os.kill(record.pid, signal.SIGSTOP)
            stopped = time.monotonic()
        if i == 550:
            os.kill(record.pid, signal.SIGCONT)
        producer.poll(0.02)
    assert producer.flush(60) == 0
    after = sorted(t for t in delivered if isinstance(t, float) and t > stopped)
    gaps = [b - a for a, b in zip([stopped, *after], after, strict=False)]
    print(f"kafka-2 SIGSTOPped for ~10 s: longest pause in deliveries {max(gaps):.1f} s; "
          f"{len(delivered)} of {sent} delivered")
    assert errors == [] and len(delivered) == sent
    deadline = time.monotonic() + 60
    while True:  # kafka-2 back in every partition's in-sync replicas
        meta = admin.list_topics(topic, timeout=10)
        if all(len(p.isrs) == 3 for p in meta.topics[topic].partitions.values()):
            break
        assert time.monotonic() < deadline, "kafka-2 did not rejoin the ISR"
        time.sleep(1)
