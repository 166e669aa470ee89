"""`stumpcast smoke`: one event through Kafka, Redis and Cassandra, each read back, timed.

The quickest proof that the stack (or the clusters the settings point at) really works end to
end. `make demo` runs it after `stack up`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from runtime import cassandra
from schemas.settings import Settings
from schemas.store_access import CassandraRole

SMOKE_MATCH = "smoke"


class SmokeFailed(Exception):
    """One step did not round-trip; the message says which and what to check."""


@contextmanager
def _timed(step: str, timings: list[tuple[str, float]]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings.append((step, (time.perf_counter() - started) * 1000))


def smoke_event() -> dict[str, Any]:
    return {"type": "smoke", "v": 1, "event_id": uuid.uuid4().hex,
            "ts_ms": int(time.time() * 1000)}


def kafka_round_trip(settings: Settings, payload: bytes, event_id: str,
                     timeout: float = 30.0) -> tuple[int, int]:
    """Produce with acks=all + idempotence, then read that exact offset back."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    from runtime.kafka import client_config
    from schemas.access import Principal
    from schemas.topology import SMOKE

    kafka = client_config(settings, Principal.ADMIN)  # the smoke topic is the operator's
    quiet = logging.getLogger("stumpcast.smoke.librdkafka")
    quiet.setLevel(logging.ERROR)  # e.g. "coordinator load in progress: retrying" on a new broker
    producer = Producer({**kafka, "acks": "all",
                         "enable.idempotence": True, "message.timeout.ms": int(timeout * 1000),
                         "logger": quiet})
    delivered: list[Any] = []
    producer.produce(SMOKE.name, key=SMOKE_MATCH.encode(), value=payload,
                     on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(timeout)
    if not delivered or delivered[0][0] is not None:
        why = delivered[0][0] if delivered else "no delivery report"
        raise SmokeFailed(f"Kafka produce to {SMOKE.name} at {settings.kafka_bootstrap_str} "
                          f"failed: {why}. Is the stack up? (`stumpcast stack up`)")
    msg = delivered[0][1]
    partition, offset = msg.partition(), msg.offset()
    consumer = Consumer({**kafka, "group.id": f"stumpcast-smoke-{event_id}",
                         "enable.auto.commit": False, "logger": quiet})
    try:
        consumer.assign([TopicPartition(SMOKE.name, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = consumer.poll(1.0)
            if got is None or got.error():
                continue
            if got.value() == payload:
                return partition, offset
    except KafkaException as exc:
        raise SmokeFailed(f"Kafka consume failed: {exc}") from None
    finally:
        consumer.close()
    raise SmokeFailed(f"produced to {SMOKE.name}[{partition}]@{offset} but could not read it "
                      f"back within {timeout:.0f} s")


def redis_round_trip(settings: Settings, payload: bytes) -> None:
    import redis

    from runtime.redisconn import sync_redis
    from schemas.store_access import RedisUser
    from schemas.topology import RedisKeys

    client = sync_redis(settings, RedisUser.ADMIN, socket_timeout=5)
    try:
        client.set(RedisKeys.smoke, payload, ex=3600)
        if client.get(RedisKeys.smoke) != payload:
            raise SmokeFailed(f"Redis {RedisKeys.smoke} read back something else")
    except redis.RedisError as exc:
        raise SmokeFailed(f"Redis at {_redis_where(settings)} failed: {exc}. Is the stack up?") \
            from None
    finally:
        client.close()


def cassandra_round_trip(settings: Settings, event: dict[str, Any], payload: bytes) -> int:
    """Insert the event as match "smoke" at seq = its timestamp; select it back."""
    import datetime as dt

    from schemas.topology import EVENTS_TABLE

    table = f"{settings.cassandra_keyspace}.{EVENTS_TABLE}"
    seq = event["ts_ms"]
    ts = dt.datetime.fromtimestamp(seq / 1000, dt.UTC)
    try:
        with cassandra.session(settings, CassandraRole.ADMIN) as s:
            s.execute(f"INSERT INTO {table} (match_id, seq, event_id, type, ts, body) "
                      "VALUES (%s, %s, %s, %s, %s, %s)",
                      (SMOKE_MATCH, seq, event["event_id"], event["type"], ts, payload))
            row = s.execute(f"SELECT body FROM {table} WHERE match_id = %s AND seq = %s",
                            (SMOKE_MATCH, seq)).one()
    except Exception as exc:  # noqa: BLE001 - driver errors translated at the seam
        raise SmokeFailed(f"Cassandra at {','.join(settings.cassandra_hosts)}:"
                          f"{settings.cassandra_port} failed: {exc}. Is the stack up, and "
                          "initialised (`stumpcast stack init`)?") from None
    if row is None or bytes(row.body) != payload:
        raise SmokeFailed(f"Cassandra {table} did not return the row just written")
    return seq


def run_smoke(settings: Settings, say: Callable[[str], None]) -> list[tuple[str, float]]:
    event = smoke_event()
    payload = orjson.dumps(event)
    timings: list[tuple[str, float]] = []
    with _timed("kafka produce (acks=all, idempotent) + consume back", timings):
        partition, offset = kafka_round_trip(settings, payload, event["event_id"])
    say(f"kafka     {settings.kafka_bootstrap_str}: event {event['event_id'][:8]} "
        f"round trip via partition {partition} offset {offset}")
    with _timed("redis set + get", timings):
        redis_round_trip(settings, payload)
    say(f"redis     {_redis_where(settings)}: stored and read back")
    with _timed("cassandra insert + select", timings):
        seq = cassandra_round_trip(settings, event, payload)
    say(f"cassandra {','.join(settings.cassandra_hosts)}:{settings.cassandra_port}: "
        f"match_id={SMOKE_MATCH} seq={seq} written and read back")
    return timings


def cmd_smoke(args: argparse.Namespace, settings: Settings) -> int:
    try:
        timings = run_smoke(settings, print)
    except SmokeFailed as exc:
        print(f"stumpcast smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    for step, ms in timings:
        print(f"  {ms:8.1f} ms  {step}")
    print("smoke: OK")
    return 0


def register(sub: Any, bench: Any) -> None:
    p = sub.add_parser("smoke", help="one event through Kafka, Redis and Cassandra, timed",
                       description="Produce one event to the smoke topic (acks=all, "
                       "idempotent) and consume it back, store it in Redis and in the "
                       "Cassandra event table (match_id 'smoke'), read each back, print "
                       "timings. Uses the configured endpoints (STUMPCAST_*).")
    p.set_defaults(func=cmd_smoke)


def _redis_where(settings: Settings) -> str:
    """The Redis the factory connects to: the cluster's seed nodes when the settings name one."""
    if settings.redis_cluster:
        return f"cluster {','.join(settings.redis_cluster)}"
    return settings.redis_url
