"""What an analytics worker reads and writes, whichever engine runs it (confluent-kafka, faust)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.kafka import client_config
from schemas.access import Principal
from schemas.settings import Settings
from schemas.topology import ANALYTICS_CONCURRENCY, GROUP_ANALYTICS, VIEWER_HEARTBEATS


@dataclass(frozen=True)
class WorkerConfig:
    topic: str = VIEWER_HEARTBEATS.name
    out_topic: str = ANALYTICS_CONCURRENCY.name
    group: str = GROUP_ANALYTICS
    batch: int = 20_000
    flush_s: float = 1.0
    idle_ms: int = 3_000
    session_timeout_ms: int = 10_000   # a killed worker's partitions move after this long
    deliver_timeout_s: float = 5.0     # window records not on Kafka by then: retried


def topic_partitions(settings: Settings, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings, Principal.ANALYTICS))
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
