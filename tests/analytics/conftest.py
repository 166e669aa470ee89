"""Fixtures shared by the analytics tests on the stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.access import Principal
from tests.kafka_access import admin_config, granted, service_access

HEARTBEAT_PARTITIONS = 8


@pytest.fixture
def topics(kafka_stack: Any) -> Iterator[tuple[str, str]]:
    """A heartbeats topic (8 partitions) and a concurrency topic of the test's own, which the
    analytics principal may read and write as an operator would grant it; deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(kafka_stack))
    tag = uuid.uuid4().hex[:8]
    names = (f"stumpcast.test.heartbeats.{tag}", f"stumpcast.test.concurrency.{tag}")
    new = [NewTopic(names[0], HEARTBEAT_PARTITIONS, 1), NewTopic(names[1], 1, 1)]
    for fut in admin.create_topics(new).values():
        fut.result(30)
    access = service_access(Principal.ANALYTICS, read=[names[0]], write=[names[1]],
                            groups=[f"g-{names[0]}"])
    with granted(kafka_stack, access):
        yield names
    for fut in admin.delete_topics(list(names)).values():
        fut.result(30)
