"""The whole streams pipeline against the real stack: replays, kills, flushes, bad events.

Workers and replays run as real ``stumpcast`` subprocesses; results are compared with the pure
fold and the pure notification derivation of the same events.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.chaos_io import end_offsets  # shared with `stumpcast chaos`
from runtime import cassandra
from runtime.redisconn import sync_redis
from schemas import codec, deadletter
from schemas.events import Event
from schemas.settings import Settings
from schemas.store_access import CassandraRole, RedisUser
from schemas.topology import (
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    NOTIFICATIONS,
    SCORECARDS,
    RedisKeys,
)
from streams import cricsheet
from streams.pipeline import ScorecardFolder, all_notes, replay_state
from tests.kafka_access import admin_config
from tests.streams.cricsheet_data import DATA_DIR

pytestmark = [pytest.mark.stack, pytest.mark.slow]

DATA = DATA_DIR
STUMPCAST = Path(sys.executable).with_name("stumpcast")
FILES = sorted(DATA.glob("*.json"))[:5]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    name: str
    port: int
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "STUMPCAST_STREAMS_METRICS_PORT": str(self.port),
               "STUMPCAST_STREAMS_INSTANCE_ID": self.name, "STUMPCAST_LOG_FORMAT": "text",
               "STUMPCAST_STREAMS_GAP_TIMEOUT": "3", **(self.env or {})}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(STUMPCAST), "streams", "worker"], env=env,
                                         stdout=out, stderr=out, start_new_session=True)

    def wait_ready(self, timeout: float = 90, require_ready: bool = True) -> None:
        """Until /readyz says ready (or, with ``require_ready=False``, until it answers and
        partitions are assigned, e.g. while the event store is unreachable)."""
        deadline = time.monotonic() + timeout
        path = "readyz" if require_ready else "metrics"
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{path}", timeout=1):
                    if require_ready:
                        return
                    time.sleep(8)  # the metrics server starts before the group is joined
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()


@pytest.fixture
def worker(stack: Settings, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(f"test-{uuid.uuid4().hex[:6]}", free_port(), tmp_path / "worker.log")
    w.start()
    w.wait_ready()
    yield w
    w.stop()


def read_since(settings: Settings, topic: str, since: dict[int, int],
               keys: set[str]) -> list[tuple[str, bytes]]:
    """Every committed (key, value) written to ``topic`` after ``since`` whose key is in
    ``keys``, read to the end of each partition (read_committed: transaction markers and
    aborted batches take offsets but are never delivered)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({**admin_config(settings), "group.id": "unused",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, o) for p, o in since.items()])
    out: list[tuple[str, bytes]] = []
    left = set(since)
    try:
        while left:
            msg = c.poll(10)
            assert msg is not None, f"timed out reading {topic}"
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                left.discard(msg.partition())
                continue
            key = (msg.key() or b"").decode()
            if key in keys:
                out.append((key, msg.value() or b""))
    finally:
        c.close()
    return out


def replay(path: Path, match_id: str, speed: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(STUMPCAST), "replay", str(path), "--speed", str(speed),
                             "--match-id", match_id, "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def speed_for(path: Path, match_id: str, seconds: float) -> float:
    """The replay speed that plays the whole match in about ``seconds``."""
    events = cricsheet.import_match(cricsheet.load(path), match_id)
    return max(1.0, (events[-1].ts - events[0].ts).total_seconds() / seconds)


def truth(path: Path, match_id: str) -> tuple[list[Event], dict[str, Any], list[str]]:
    events = cricsheet.import_match(cricsheet.load(path), match_id)
    state = replay_state(match_id, events, ScorecardFolder())
    return events, state.doc or {}, [n.id for n in all_notes(state)]


def wait_views(settings: Settings, finals: dict[str, int], timeout: float = 180) -> None:

    r = sync_redis(settings, RedisUser.ADMIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = {m: int(r.hget(RedisKeys.position(m), "seq") or 0) for m in finals}
        if seqs == finals:
            return
        time.sleep(0.5)
    raise AssertionError(f"views stuck at {seqs}, want {finals}")


def load_store(settings: Settings, match_id: str) -> list[Any]:

    with cassandra.session(settings, CassandraRole.ADMIN) as s:
        return list(s.execute(f"SELECT seq, event_id FROM {settings.cassandra_keyspace}."
                              "match_events WHERE match_id = %s", (match_id,)))


def wait_store(settings: Settings, match_id: str, n: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    rows = load_store(settings, match_id)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = load_store(settings, match_id)
    return rows


def check_results(settings: Settings, runs: dict[str, Path],
                  since: dict[str, dict[int, int]]) -> None:

    r: Any = sync_redis(settings, RedisUser.ADMIN)
    expected = {m: truth(p, m) for m, p in runs.items()}
    wait_views(settings, {m: len(ev) for m, (ev, _, _) in expected.items()})
    for m, (events, doc, note_ids) in expected.items():
        assert orjson.loads(r.get(RedisKeys.card(m)) or b"null") == doc, m
        rows = wait_store(settings, m, len(events))
        assert [(row.seq, row.event_id) for row in rows] == [(e.seq, e.event_id) for e in events]
        notes = [orjson.loads(v[b"u"])["id"] for _, v in r.xrange(RedisKeys.notifications(m))]
        assert notes == note_ids, m
    keys = set(runs)
    cards: dict[str, Any] = {}
    for key, value in read_since(settings, SCORECARDS.name, since[SCORECARDS.name], keys):
        cards[key] = orjson.loads(value)
    assert cards == {m: doc for m, (_, doc, _) in expected.items()}
    want = {m: note_ids for m, (_, _, note_ids) in expected.items()}
    deadline = time.monotonic() + 30   # the views can lead the relay's last transaction
    while True:
        sent: dict[str, list[str]] = {m: [] for m in runs}
        for key, v in read_since(settings, NOTIFICATIONS.name, since[NOTIFICATIONS.name], keys):
            sent[key].append(orjson.loads(v)["id"])
        if sent == want or time.monotonic() > deadline:
            break
        time.sleep(1)
    dups = sum(c - 1 for ids in sent.values() for c in Counter(ids).values())
    assert dups == 0, f"{dups} duplicate notifications"
    for m, (_, _, note_ids) in expected.items():
        assert sent[m] == note_ids, m  # every one, once, in order
    print(f"notifications: {sum(map(len, sent.values()))} sent, 0 duplicates")


def offsets_now(settings: Settings) -> dict[str, dict[int, int]]:
    return {t.name: end_offsets(settings, t.name)
            for t in (SCORECARDS, NOTIFICATIONS, MATCH_EVENTS_DLQ)}


def test_pipeline_five_matches_at_once(stack: Settings, worker: Worker) -> None:
    since = offsets_now(stack)
    tag = uuid.uuid4().hex[:6]
    runs = {f"t{tag}-{p.stem}": p for p in FILES}
    procs = [replay(p, m, 0) for m, p in runs.items()]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    check_results(stack, runs, since)

    r: Any = sync_redis(stack, RedisUser.ADMIN)
    first = next(iter(runs))
    epoch = int(r.hget(RedisKeys.position(first), "epoch") or 0)
    rebuilt = subprocess.run([str(STUMPCAST), "rebuild", first], capture_output=True, text=True,
                             timeout=120)
    assert rebuilt.returncode == 0 and "equal to the live view" in rebuilt.stdout, rebuilt
    assert int(r.hget(RedisKeys.position(first), "epoch") or 0) > epoch
    assert orjson.loads(r.get(RedisKeys.card(first)) or b"null") == truth(runs[first], first)[1]
    assert len(r.xrange(RedisKeys.history(first))) == 1  # history restarted with the card


def test_pipeline_store_outage_catches_up(stack: Settings, tmp_path: Path) -> None:
    """A worker that cannot reach Cassandra keeps the view moving and acks nothing; once it is
    gone, the events are re-read by a worker that can, and stored."""
    m = f"c{uuid.uuid4().hex[:6]}"
    events, doc, _ = truth(FILES[0], m)
    blind = Worker(f"test-blind-{m}", free_port(), tmp_path / "blind.log",
                   env={"STUMPCAST_CASSANDRA_PORT": "1"})
    blind.start()
    blind.wait_ready(require_ready=False)
    try:
        from streams.producer import scorer_producer

        p = scorer_producer(stack, "cricsheet")
        for e in events:
            p.send(e)
        assert p.flush() == 0
        wait_views(stack, {m: len(events)})
    finally:
        blind.kill()
    healthy = Worker(f"test-heal-{m}", free_port(), tmp_path / "heal.log")
    healthy.start()
    try:
        healthy.wait_ready()
        rows = wait_store(stack, m, len(events), timeout=90)
        assert [r.seq for r in rows] == [e.seq for e in events]
    finally:
        healthy.stop()


def wait_for_a_note(settings: Settings, keys: set[str], timeout: float = 30) -> None:
    """Return as soon as a new notification of one of ``keys`` is committed."""
    from confluent_kafka import Consumer, TopicPartition

    ends = end_offsets(settings, NOTIFICATIONS.name)
    c = Consumer({**admin_config(settings), "group.id": "unused",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(NOTIFICATIONS.name, p, o) for p, o in ends.items()])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.05)
            if msg is not None and not msg.error() and (msg.key() or b"").decode() in keys:
                return
        raise AssertionError("no notification within the timeout")
    finally:
        c.close()


def test_pipeline_survives_kills_and_a_redis_flush(stack: Settings, tmp_path: Path) -> None:

    since = offsets_now(stack)
    tag = uuid.uuid4().hex[:6]
    runs = {f"k{tag}-{p.stem}": p for p in FILES}
    w = Worker(f"test-{tag}", free_port(), tmp_path / "worker.log")
    w.start()
    w.wait_ready()
    rng = random.Random(tag)
    try:
        procs = [replay(p, m, speed_for(p, m, 20.0)) for m, p in runs.items()]
        for round_ in range(5):
            time.sleep(rng.uniform(1.5, 3.0))
            if round_ == 2:  # Redis loses the views mid-match (our keys only: shared server)
                r = sync_redis(stack, RedisUser.ADMIN)
                for m in runs:
                    r.delete(RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                             RedisKeys.notifications(m))
                continue
            if round_ % 2:  # the worst moment: a notification just published, its event
                wait_for_a_note(stack, set(runs))  # not yet acked (offsets commit every 0.2 s)
            w.kill()
            w.start()
            w.wait_ready()
        for proc in procs:
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out
        check_results(stack, runs, since)
    finally:
        w.stop()


def test_pipeline_bad_events_are_counted(stack: Settings, worker: Worker) -> None:
    from streams.producer import scorer_producer

    since = offsets_now(stack)
    m = f"b{uuid.uuid4().hex[:6]}"
    events, doc, _ = truth(FILES[0], m)
    p = scorer_producer(stack, "cricsheet")
    first = events[:40]
    order = first[:10] + [first[11], first[10]] + first[12:]  # one swap: absorbed
    for e in order:
        p.send(e)
    for e in first[:5]:  # five duplicates: absorbed
        p.send(e)
    impostor = dataclasses.replace(first[20], event_id=f"{m}-impostor")
    p.send(impostor)  # seq 21 again, another event: a conflict
    stranger = codec.to_wire(events[40]) | {"source": "mallory"}
    p.send_raw(MATCH_EVENTS.name, m.encode(), orjson.dumps(stranger))  # unauthorised
    # malformed, so it cannot carry a signature: refused before it is parsed
    p.send_raw(MATCH_EVENTS.name, m.encode(), b'{"type": "delivery", "v": 1', signed=False)
    p.send_raw(MATCH_EVENTS.name, m.encode(), orjson.dumps({"type": "nonsense", "v": 1}))
    p.send(events[45])  # a gap: held, never dead-lettered (filled below)
    orphan = cricsheet.import_match(cricsheet.load(FILES[1]), f"{m}-orphan")[5]
    p.send(orphan)  # no match.created seen
    assert p.flush() == 0
    wait_views(stack, {m: 40})
    # Another worker of the group (with its own gap timeout) may own the partition: poll.
    want = {"unauthorised_source": 1, "unknown_match": 1, "invalid": 1, "bad_signature": 1,
            "conflict": 1}
    junk = ('{"type": "delivery", "v": 1', {"type": "nonsense", "v": 1})
    deadline = time.monotonic() + 30
    while True:
        dlq = read_since(stack, MATCH_EVENTS_DLQ.name, since[MATCH_EVENTS_DLQ.name],
                         {m, f"{m}-orphan", ""})
        docs = [orjson.loads(v) for _, v in dlq]
        reasons = Counter(d["reason"] for d in docs
                          if d.get("match_id") in (m, f"{m}-orphan")
                          or (d["reason"] in ("invalid", "bad_signature")
                              and _unsigned(d["event"]) in junk))
        if all(reasons[k] >= n for k, n in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    # Junk has no match id: a redelivery of an older run's junk may match too, hence >=.
    loose = ("invalid", "bad_signature")
    assert all(reasons[k] >= 1 for k in loose), reasons
    assert {k: v for k, v in reasons.items() if k not in loose} == \
        {k: v for k, v in want.items() if k not in loose}, reasons
    [conflict] = [deadletter.decode(v) for _, v in dlq
                  if deadletter.decode(v).reason is deadletter.Reason.CONFLICT]
    assert (conflict.match_id, conflict.seq, conflict.event["event_id"]) == \
        (m, 21, impostor.event_id)
    # The swap was reordered and the duplicates absorbed: the view and the store hold 40, and
    # seq 21 still holds its own event.
    rows = wait_store(stack, m, 40)
    assert [r.seq for r in rows] == list(range(1, 41))
    assert rows[20].event_id == first[20].event_id
    time.sleep(4)  # past the gap timeout (3 s): seq 46 is still held, not dead-lettered
    assert "sequence_gap" not in Counter(orjson.loads(v)["reason"] for _, v in read_since(
        stack, MATCH_EVENTS_DLQ.name, since[MATCH_EVENTS_DLQ.name], {m}))
    for e in events[40:45]:  # the producer sends the missing ones: the held seq 46 folds
        p.send(e)
    assert p.flush() == 0
    wait_views(stack, {m: 46})
    text = worker.metrics()  # the worker still serves its metrics
    if group_members(stack) <= 1:  # alone in the group, so it was the one that saw the conflict
        assert 'stumpcast_streams_rejects_total{reason="conflict"} 1.0' in text


def _unsigned(doc: Any) -> Any:
    """A dead letter's event without its signature member."""
    return {k: v for k, v in doc.items() if k != "sig"} if isinstance(doc, dict) else doc


def group_members(settings: Settings) -> int:
    """Workers now in the streams group (others may share the stack's brokers)."""
    from confluent_kafka.admin import AdminClient

    from schemas.topology import GROUP_STREAMS

    admin = AdminClient(admin_config(settings))
    group = admin.describe_consumer_groups([GROUP_STREAMS])[GROUP_STREAMS].result(timeout=20)
    return len(group.members)
