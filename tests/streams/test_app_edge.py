"""The faust edge of the worker without a broker: acks in offset order, Kafka errors
translated at the seam (``streams.app``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from streams.app import FaustOutputs, PartitionAcks
from streams.errors import OutputError


class Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


def message(partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(partition=partition, offset=offset))


async def test_acks_reach_faust_in_offset_order_per_partition() -> None:
    acks, stream = PartitionAcks(), Stream()
    acks.stream = stream
    a5, a6, b9 = (acks.take(message(p, o)) for p, o in ((0, 5), (0, 6), (1, 9)))
    assert a5 and a6 and b9
    await a6()  # offset 6 of partition 0 done before 5: held back
    await b9()  # another partition is independent
    assert stream.acked == [9]
    await a5()
    assert stream.acked == [9, 5, 6]


async def test_a_revoked_partitions_late_acks_are_dropped() -> None:
    acks, stream = PartitionAcks(), Stream()
    acks.stream = stream
    late = acks.take(message(2, 40))
    acks.revoke([2])
    assert late is not None
    await late()
    assert stream.acked == []


async def test_a_reread_starts_at_the_oldest_unacked_and_skips_stale_copies() -> None:
    acks, stream = PartitionAcks(), Stream()
    acks.stream = stream
    first = [acks.take(message(3, o)) for o in (10, 11, 12)]
    assert all(first)
    await first[0]()  # type: ignore[misc]  # 10 is acked; 11 is the oldest unacknowledged
    assert acks.reread_from(3) == 11
    assert acks.take(message(3, 13)) is None  # buffered before the seek: skipped
    again = acks.take(message(3, 11))
    assert again is not None
    await first[1]()  # type: ignore[misc]  # an ack of before the re-read: not passed on
    await again()
    assert stream.acked == [10, 11]


class Topic:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def send(self, key: Any, value: Any) -> Any:
        raise self.error


async def test_kafka_errors_are_translated_at_the_seam() -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
    from faust.exceptions import ProducerSendError

    def wrapped(cause: BaseException) -> BaseException:
        try:
            raise ProducerSendError("Error while sending") from cause
        except ProducerSendError as exc:
            return exc

    down = FaustOutputs(Topic(wrapped(KafkaConnectionError())), None)
    with pytest.raises(OutputError):
        await down.scorecard("m", b"{}")
    refused = FaustOutputs(None, Topic(wrapped(MessageSizeTooLargeError())))
    with pytest.raises(ProducerSendError):  # not retriable: the caller's bug path
        await refused.dead_letter(b"m", b"{}")
