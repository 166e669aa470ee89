"""Kafka itself: no client without credentials, and each principal only what its ACLs allow."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runtime.kafka import client_config
from schemas.access import Principal, scorer_principal
from schemas.settings import Settings
from schemas.topology import (
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    NOTIFICATIONS,
    NOTIFY_RELAY,
    VIEWER_HEARTBEATS,
)

pytestmark = pytest.mark.stack
FAST = {"message.timeout.ms": 6000, "socket.timeout.ms": 3000,
        "socket.connection.setup.timeout.ms": 3000}


def produce(conf: dict[str, Any], topic: str) -> Any:
    """The delivery error of one record (None: it was written)."""
    from confluent_kafka import Producer

    errors: list[Any] = []
    p = Producer({**conf, **FAST, "logger": _quiet()})
    p.produce(topic, b'{"forged": true}', key=b"attack", on_delivery=lambda e, _m: errors.append(e))
    p.flush(10)
    return errors[0] if errors else "no delivery report"


def consume(conf: dict[str, Any], topic: str) -> Any:
    """The first error reading ``topic`` in a group (None: read, or nothing to read)."""
    from confluent_kafka import Consumer

    c = Consumer({**conf, **FAST, "group.id": f"analyst-attack-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "logger": _quiet()})
    c.subscribe([topic])
    try:
        for _ in range(8):
            msg = c.poll(1.0)
            if msg is not None and msg.error():
                return msg.error()
            if msg is not None:
                return None
        return None
    finally:
        c.close()


def _quiet() -> Any:
    import logging

    log = logging.getLogger("tests.security.librdkafka")
    log.setLevel(logging.CRITICAL)
    return log


def _denied(error: Any) -> bool:
    from confluent_kafka import KafkaError

    return isinstance(error, KafkaError) and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED)


def test_no_credentials_and_wrong_credentials_are_refused(kafka_stack: Settings,
                                                          attacks: Any) -> None:
    plain = {"bootstrap.servers": kafka_stack.kafka_bootstrap_str}
    attacks.check("kafka: write match.events without credentials",
                  _denied(produce(plain, MATCH_EVENTS.name)))
    wrong = {**client_config(kafka_stack, Principal.GATEWAY), "sasl.password": "guess"}
    attacks.check("kafka: write with a wrong password",
                  _denied(produce(wrong, VIEWER_HEARTBEATS.name)))
    admin_guess = {**client_config(kafka_stack, Principal.ADMIN), "sasl.password": "admin"}
    attacks.check("kafka: admin with a guessed password",
                  _denied(produce(admin_guess, MATCH_EVENTS.name)))


@pytest.mark.parametrize(("principal", "topic"), [
    (Principal.GATEWAY, MATCH_EVENTS.name),           # forge scoring with the gateway's key
    (Principal.ANALYST, MATCH_EVENTS.name),
    (Principal.NOTIFIER, NOTIFICATIONS.name),          # fake notifications
    (scorer_principal("desk"), NOTIFY_RELAY.name),     # a checkpoint that silences a match
    (scorer_principal("desk"), NOTIFICATIONS.name),
    (scorer_principal("desk"), MATCH_EVENTS_DLQ.name),
    (Principal.ANALYTICS, MATCH_EVENTS.name),
    (Principal.MEDIA, NOTIFICATIONS.name),
])
def test_principals_cannot_write_what_they_do_not_own(kafka_stack: Settings, attacks: Any,
                                                      principal: str, topic: str) -> None:
    error = produce(client_config(kafka_stack, principal), topic)
    attacks.check(f"kafka: {principal} writes {topic}", _denied(error), error)


@pytest.mark.parametrize(("principal", "topic"), [
    (Principal.ANALYST, MATCH_EVENTS.name),            # raw input is not a derived topic
    (Principal.ANALYST, MATCH_EVENTS_DLQ.name),
    (Principal.GATEWAY, NOTIFICATIONS.name),
    (scorer_principal("desk"), MATCH_EVENTS.name),     # scorers write, never read
])
def test_principals_cannot_read_what_they_do_not_own(kafka_stack: Settings, attacks: Any,
                                                     principal: str, topic: str) -> None:
    error = consume(client_config(kafka_stack, principal), topic)
    attacks.check(f"kafka: {principal} reads {topic}", _denied(error), error)


def test_the_allowed_paths_still_work(kafka_stack: Settings) -> None:
    """Not an attack: the ACLs are not simply denying everything."""
    assert produce(client_config(kafka_stack, Principal.GATEWAY), VIEWER_HEARTBEATS.name) is None
    assert consume(client_config(kafka_stack, Principal.ANALYST), NOTIFICATIONS.name) is None
