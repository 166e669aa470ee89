"""The chaos suite's Kafka reads ride out a leader that moved in the round before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException

from bench import chaos_io
from schemas.settings import Settings


class FakeConsumer:
    """Two partitions; the first ``refusals`` watermark calls fail with ``code``."""

    def __init__(self, refusals: int, code: int) -> None:
        self.refusals, self.code, self.calls = refusals, code, 0

    def __call__(self, config: dict[str, Any]) -> FakeConsumer:
        return self

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None, 1: None})})

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(self.code))
        return 0, 10 + tp.partition

    def close(self) -> None:
        pass


def test_end_offsets_asks_again_while_the_leader_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeConsumer(2, KafkaError.NOT_LEADER_FOR_PARTITION)
    monkeypatch.setattr(confluent_kafka, "Consumer", fake)
    monkeypatch.setattr(chaos_io.time, "sleep", lambda s: None)
    assert chaos_io.end_offsets(Settings.from_env(), "t") == {0: 10, 1: 11}
    assert fake.calls == 4  # two refusals, then both partitions


def test_end_offsets_gives_up_on_other_errors_and_after_its_attempts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chaos_io.time, "sleep", lambda s: None)
    denied = FakeConsumer(1, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    monkeypatch.setattr(confluent_kafka, "Consumer", denied)
    with pytest.raises(KafkaException):
        chaos_io.end_offsets(Settings.from_env(), "t")
    never = FakeConsumer(99, KafkaError.NOT_LEADER_FOR_PARTITION)
    monkeypatch.setattr(confluent_kafka, "Consumer", never)
    with pytest.raises(KafkaException):
        chaos_io.end_offsets(Settings.from_env(), "t", attempts=3)
