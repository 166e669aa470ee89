"""The relay's Kafka log against the real broker: transactions, fencing, checkpoints."""

from __future__ import annotations

import uuid

import pytest

from runtime.kafka import client_config
from schemas.access import Principal
from schemas.settings import Settings
from schemas.topology import NOTIFICATIONS
from streams.relay import TXN_PREFIX, FencedError, KafkaTxnLog, read_checkpoints
from tests.kafka_access import admin_config

pytestmark = pytest.mark.stack


def committed_notes(settings: Settings, since: dict[int, int], match_id: str) -> list[bytes]:
    """Values keyed ``match_id`` on ``match.notifications`` after ``since``, read_committed."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({**admin_config(settings), "group.id": "unused",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(NOTIFICATIONS.name, p, o) for p, o in since.items()])
    out, left = [], set(since)
    try:
        while left:
            msg = c.poll(10)
            assert msg is not None, "timed out reading match.notifications"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                left.discard(msg.partition())
                continue
            if msg.key() == match_id.encode():
                out.append(msg.value())
    finally:
        c.close()
    return out


def end_offsets(settings: Settings) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**admin_config(settings), "group.id": "unused"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(NOTIFICATIONS.name, p), timeout=10)[1]
                for p in range(NOTIFICATIONS.partitions)}
    finally:
        c.close()


def test_transactions_fence_the_old_owner_and_hide_its_open_batch(kafka_stack: Settings) -> None:
    # As the streams principal, with transactional ids under the prefix its ACL allows.
    kafka, tag = client_config(kafka_stack, Principal.STREAMS), uuid.uuid4().hex[:8]
    m, prefix, part = f"relay-{tag}", f"{TXN_PREFIX}-test-{tag}", 5
    since = end_offsets(kafka_stack)
    old = KafkaTxnLog(kafka, part, txn_prefix=prefix, call_timeout=20)
    assert m not in old.open()
    old.commit([(m, b"first")], {m: (1, 0)})
    # The old owner starts another batch and is "killed" before committing it.
    old.producer.begin_transaction()
    old.producer.produce(NOTIFICATIONS.name, key=m.encode(), value=b"zombie")
    old.producer.flush(10)
    old.in_txn = True
    new = KafkaTxnLog(kafka, part, txn_prefix=prefix, call_timeout=20)
    assert new.open()[m] == (1, 0)  # fenced the old owner, aborted its open batch
    with pytest.raises(FencedError):
        old.commit([], {})  # the old owner's commit of that batch is refused
    new.commit([(m, b"second"), (m, b"third")], {m: (3, 0)})
    assert committed_notes(kafka_stack, since, m) == [b"first", b"second", b"third"]
    assert read_checkpoints(kafka, part)[m] == (3, 0)
    new.close()
