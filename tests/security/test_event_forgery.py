"""Forged events against a real streams worker: each is dead-lettered, the real one wins.

The threat (issue 15): anyone who can write ``match.events`` could score a match, and a forged
event with the next seq won the race: the scorer's real event was then a duplicate. Now every
event must carry a valid Ed25519 signature of a registered scorer that may claim its source.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import codec, deadletter
from schemas.events import Delivery, DeliveryCorrected
from schemas.settings import Settings
from schemas.signing import Signer, generate_key
from schemas.topology import MATCH_EVENTS, MATCH_EVENTS_DLQ
from streams.producer import scorer_producer
from tests.streams.test_pipeline_stack import (
    FILES,
    Worker,
    end_offsets,
    free_port,
    load_store,
    read_since,
    truth,
    wait_views,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: Any) -> Iterator[Worker]:
    from tests.conftest import require

    require(Settings.from_env(), "kafka", "cassandra", "redis")
    log = Path(tmp_path_factory.mktemp("forgery")) / "worker.log"
    w = Worker(f"test-sec-{uuid.uuid4().hex[:6]}", free_port(), log)
    w.start()
    w.wait_ready()
    yield w
    w.stop()


def _dead_letters(settings: Settings, since: dict[int, int], match_id: str,
                  want: int, timeout: float = 30) -> list[deadletter.DeadLetter]:
    deadline = time.monotonic() + timeout
    while True:
        got = [deadletter.decode(v) for _, v in
               read_since(settings, MATCH_EVENTS_DLQ.name, since, {match_id})]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(1)


def test_forged_events_are_dead_lettered_and_the_real_one_wins(stack: Settings, worker: Worker,
                                                               attacks: Any) -> None:
    m = f"sec{uuid.uuid4().hex[:6]}"
    events, _, _ = truth(FILES[0], m)
    since = end_offsets(stack, MATCH_EVENTS_DLQ.name)
    real = scorer_producer(stack, "cricsheet")
    for e in events[:10]:
        real.send(e)
    assert real.flush() == 0
    wait_views(stack, {m: 10})

    # A compromised scorer (the desk's Kafka login and key) tries to score seq 11 first.
    desk = scorer_producer(stack, "desk")
    target = events[10]
    assert isinstance(target.payload, Delivery)
    forged = dataclasses.replace(target, event_id=f"{m}-forged",
                                 payload=dataclasses.replace(target.payload, runs_batter=6))
    body = codec.encode(forged)
    mallory_pem, _ = generate_key()
    legit = Signer("cricsheet", _key(stack, "cricsheet")).sign(codec.encode(target))
    tampered = legit.replace(b'"seq":11', b'"seq":11 ', 1)  # one byte more, same signature
    cases = {
        "unsigned event": body,
        "signed by an unregistered key": Signer("mallory", mallory_pem).sign(body),
        "desk's key signing as cricsheet": _as(Signer("desk", _key(stack, "desk")).sign(body),
                                               "desk", "cricsheet"),
        "a real signature over tampered bytes": tampered,
    }
    for raw in cases.values():
        desk.send_raw(MATCH_EVENTS.name, m.encode(), raw, signed=False)
    desk.send(forged)  # validly signed by desk, but claims the cricsheet source
    correction = dataclasses.replace(
        events[11], event_id=f"{m}-fix", seq=11,
        payload=DeliveryCorrected(target_seq=5, delivery=dataclasses.replace(
            events[4].payload, runs_batter=6)))  # type: ignore[arg-type]
    desk.send(correction)  # a forged correction of an earlier ball
    assert desk.flush() == 0
    time.sleep(1.0)
    real.send(target)  # the scorer's real seq 11, after all of them
    assert real.flush() == 0
    wait_views(stack, {m: 11})

    letters = _dead_letters(stack, since, m, len(cases) + 2)
    reasons = [d.reason.value for d in letters]
    for i, name in enumerate(cases):
        attacks.check(f"event: {name}", reasons[i:i + 1] == ["bad_signature"], reasons)
    attacks.check("event: desk signs an event with cricsheet's source",
                  reasons[len(cases):len(cases) + 1] == ["unauthorised_source"], reasons)
    attacks.check("event: forged delivery.corrected from another scorer",
                  reasons[len(cases) + 1:] == ["unauthorised_source"], reasons)
    stored = {row.seq: row.event_id for row in load_store(stack, m)}
    attacks.check("event: a forged next seq wins the race", stored.get(11) == target.event_id,
                  stored.get(11))
    assert all(d.match_id == m and d.seq == 11 for d in letters)


def _key(settings: Settings, scorer_id: str) -> bytes:
    from runtime.secrets import scorer_key_path

    return scorer_key_path(settings.secrets_dir, scorer_id).read_bytes()


def _as(wire: bytes, real: str, claimed: str) -> bytes:
    """``wire`` with its signature member naming ``claimed`` instead of the real signer."""
    doc = orjson.loads(wire)
    assert doc["sig"].startswith(f"{real}:")
    return wire.replace(f'"sig":"{real}:'.encode(), f'"sig":"{claimed}:'.encode())
