"""``stumpcast tail TOPIC``: a topic's messages as JSON lines (no consumer group, no commits)."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import orjson

from runtime.kafka import client_config
from schemas.access import ANALYST_GROUP_PREFIX, Principal
from schemas.settings import Settings


def render(msg: Any) -> bytes:
    value = msg.value()
    try:
        decoded: Any = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        decoded = value.decode("utf-8", "replace")
    key = msg.key()
    return orjson.dumps({"topic": msg.topic(), "partition": msg.partition(),
                         "offset": msg.offset(), "key": key.decode("utf-8", "replace")
                         if key is not None else None, "value": decoded})


def tail(settings: Settings, topic: str, from_beginning: bool = False, limit: int = 0,
         idle: float = 0.0, principal: str = Principal.ANALYST) -> int:
    """Print ``topic`` as ``principal`` (an analyst reads the derived topics; the admin
    principal reads any, e.g. the dead-letter topic)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**client_config(settings, principal),
                         "group.id": f"{ANALYST_GROUP_PREFIX}tail-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False,
                         "auto.offset.reset": "earliest" if from_beginning else "latest"})
    consumer.subscribe([topic])
    seen, last = 0, time.monotonic()
    out = sys.stdout.buffer
    try:
        while not limit or seen < limit:
            msg = consumer.poll(0.2)
            if msg is None:
                if idle and time.monotonic() - last > idle:
                    break
                continue
            if msg.error():
                print(f"tail: {msg.error()}", file=sys.stderr)
                continue
            out.write(render(msg) + b"\n")
            out.flush()
            seen, last = seen + 1, time.monotonic()
    finally:
        consumer.close()
    return 0
