"""Putting match events on ``match.events``: an idempotent producer, pacing, and stdin lines.

Pure parts (``pace``, ``parse_lines``, ``Ticker``) are separate from the Kafka shell
(``EventProducer``) so they are tested without a broker. The producer is confluent-kafka with
``enable.idempotence`` (so ``acks=all`` and in-order, exactly-once writes per partition across
retries) keyed by ``match_id``: one match is one partition and stays in order.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import codec
from schemas.access import scorer_principal
from schemas.events import Delivery, Event, EventValidationError, InningsStarted
from schemas.settings import Settings
from schemas.signing import Signer
from schemas.topology import MATCH_EVENTS


def producer_config(kafka: Mapping[str, Any], linger_ms: float = 1.0) -> dict[str, Any]:
    """librdkafka settings on top of ``kafka`` (``runtime.kafka.client_config`` of a scorer):
    idempotent (implies acks=all, max.in.flight<=5, retries), and a short linger: a live ball
    should not wait for a batch; at --speed 0 batches still fill."""
    return {**kafka, "enable.idempotence": True, "acks": "all",
            "linger.ms": linger_ms, "client.id": "stumpcast-producer"}


def pace(events: Iterable[Event], speed: float) -> Iterator[tuple[float, Event]]:
    """(seconds after the first event to send it, event): real time divided by ``speed``;
    ``speed == 0`` sends as fast as possible."""
    first: dt.datetime | None = None
    for event in events:
        if first is None:
            first = event.ts
        yield (0.0 if speed == 0 else max(0.0, (event.ts - first).total_seconds() / speed)), event


@dataclass
class LineResult:
    lineno: int
    event: Event | None
    error: str | None


def parse_lines(lines: Iterable[str | bytes]) -> Iterator[LineResult]:
    """Validate JSON lines one by one; a bad line is reported with its number, not fatal."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield LineResult(lineno, codec.decode(line), None)
        except EventValidationError as exc:
            yield LineResult(lineno, None, str(exc))


@dataclass
class Ticker:
    """What the progress bar shows: innings, over.ball and the score, from the deliveries sent
    (a display aid; the authoritative card is the worker's fold)."""

    innings: int = 0
    runs: int = 0
    wickets: int = 0
    over: str = "0.0"
    by_innings: dict[int, tuple[int, int]] = field(default_factory=dict)

    def see(self, event: Event) -> None:
        p = event.payload
        if isinstance(p, InningsStarted):
            self.innings, self.runs, self.wickets, self.over = p.innings, 0, 0, "0.0"
        elif isinstance(p, Delivery):
            x = p.extras
            self.runs += p.runs_batter + x.wides + x.noballs + x.byes + x.legbyes + x.penalty
            self.wickets += len(p.wickets)
            self.over = f"{p.over}.{p.ball}"
        if self.innings:
            self.by_innings[self.innings] = (self.runs, self.wickets)

    def text(self) -> str:
        done = [f"{r}/{w}" for i, (r, w) in sorted(self.by_innings.items()) if i < self.innings]
        head = f"{' & '.join(done)} | " if done else ""
        return f"{head}inns {self.innings}: {self.runs}/{self.wickets} ({self.over} ov)"


class EventProducer:
    """confluent-kafka shell: produce encoded events keyed by match, signed by ``signer``
    (``schemas.signing``; the streams worker refuses unsigned events), count delivery results."""

    def __init__(self, kafka: Mapping[str, Any], linger_ms: float = 1.0,
                 on_delivered: Callable[[Event, float], None] | None = None,
                 signer: Signer | None = None) -> None:
        from confluent_kafka import Producer

        self._p = Producer(producer_config(kafka, linger_ms))
        self.signer = signer
        self._on_delivered = on_delivered
        self.delivered = 0
        self.failed: list[str] = []

    def send(self, event: Event, raw: bytes | None = None, topic: str = MATCH_EVENTS.name) -> None:
        sent_at = time.time()

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                self.failed.append(f"{event.match_id}@{event.seq}: {err}")
            else:
                self.delivered += 1
                if self._on_delivered is not None:
                    self._on_delivered(event, sent_at)

        payload = raw if raw is not None else codec.encode(event)
        if self.signer is not None:
            payload = self.signer.sign(payload)
        while True:
            try:
                self._p.produce(topic, payload, key=event.match_id.encode(), on_delivery=done)
                break
            except BufferError:  # local queue full: serve callbacks, then try again
                self._p.poll(0.05)
        self._p.poll(0)

    def send_raw(self, topic: str, key: bytes | None, value: bytes, signed: bool = True) -> None:
        """``value`` as given (signed, if this producer signs and ``signed``)."""
        if self.signer is not None and signed:
            value = self.signer.sign(value)
        self._p.produce(topic, value, key=key)
        self._p.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait until everything accepted is acknowledged; return how many are still queued."""
        return int(self._p.flush(timeout))


def scorer_producer(settings: Settings, scorer_id: str, linger_ms: float = 1.0,
                    on_delivered: Callable[[Event, float], None] | None = None) -> EventProducer:
    """A producer that writes as scorer ``scorer_id``: its Kafka principal, its signing key
    (both from the secrets folder)."""
    from runtime.kafka import client_config
    from runtime.secrets import signer

    return EventProducer(client_config(settings, scorer_principal(scorer_id)), linger_ms,
                         on_delivered, signer(settings, scorer_id))
