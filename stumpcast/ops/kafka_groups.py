"""Consumer lag and members of the service groups, asked of Kafka with the admin API.

Lag is measured from the broker (end offsets minus the group's committed offsets), never by the
consumer itself, so a group whose workers are all gone still shows its lag growing. A partition
the group never committed is not counted (the group has not started reading it; where it would
start depends on its ``auto.offset.reset``). A group the broker does not know (never used, or
its offsets expired) is left out of both metrics, so "no members" means a group that ran and
now has nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TIMEOUT = 5.0


def topic_ends(admin: Any, topics: Sequence[str]) -> dict[str, dict[int, int]]:
    """topic -> partition -> end offset, for the ``topics`` that exist."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    meta = admin.list_topics(timeout=TIMEOUT)
    wanted = {TopicPartition(t, p): OffsetSpec.latest()
              for t in topics if t in meta.topics and meta.topics[t].error is None
              for p in meta.topics[t].partitions}
    ends: dict[str, dict[int, int]] = {}
    if not wanted:
        return ends
    for tp, future in admin.list_offsets(wanted, request_timeout=TIMEOUT).items():
        ends.setdefault(tp.topic, {})[tp.partition] = int(future.result().offset)
    return ends


def group_state(admin: Any, groups: Sequence[str], ends: dict[str, dict[int, int]]
                ) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """((group, topic) -> lag, group -> members) of the groups the broker knows."""
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException

    members: dict[str, int] = {}
    described = admin.describe_consumer_groups(list(groups), request_timeout=TIMEOUT)
    for group, future in described.items():
        try:
            desc = future.result()
        except KafkaException:
            continue  # unknown to the broker (newer brokers answer GROUP_ID_NOT_FOUND)
        if desc.state not in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN):
            members[group] = len(desc.members)
    lag: dict[tuple[str, str], int] = {}
    for group in groups:  # the admin API takes one group per offsets request
        request = [ConsumerGroupTopicPartitions(group)]
        try:
            result = admin.list_consumer_group_offsets(
                request, request_timeout=TIMEOUT)[group].result()
        except KafkaException:
            continue
        for tp in result.topic_partitions or []:
            end = ends.get(tp.topic, {}).get(tp.partition)
            if end is None or tp.offset < 0:
                continue
            key = (group, tp.topic)
            lag[key] = lag.get(key, 0) + max(0, end - tp.offset)
        if group not in members and any(k[0] == group for k in lag):
            members[group] = 0  # offsets but no description: nobody is in it
    return lag, members
