"""``stumpcast bench streams``: worker throughput and produce→Redis latency, with a baseline.

Runs one real worker (``stumpcast streams worker`` as a subprocess) against the stack and:

1. throughput: produces ``--events`` events of fresh matches at once (``--speed 0``) and
   times until every view holds its last seq (events/s through the worker), then the plain
   loop over the same events; ``--rounds`` times, alternating, and the median ratio is the
   figure (one round on a shared machine is mostly noise);
2. latency at 10 matches x 1 event/s and 10 matches x 10 events/s (100 events/s in total):
   per event, from the producer's ``produce()`` call to the history entry arriving on a
   Redis ``XREAD`` (what the gateway sees). The first 5 events of each match are warm-up
   (the worker meets the match: recovery, first fold), followed by a 2 s pause, as a live
   match exists well before its balls;
3. the baseline, in the same run: a plain confluent-kafka consumer → decode → fold → the same
   Lua commit loop, with no faust, no event store, no notifications, no DLQ; it re-reads the
   throughput run's offsets and, during the latency runs, consumes alongside the worker
   (writing under ``plain-`` match ids).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import log as benchlog
from bench.workers import bench_matches, start_worker, stop_worker
from runtime.kafka import client_config
from runtime.redisconn import sync_redis
from schemas import codec
from schemas.access import Principal
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import GROUP_STREAMS, MATCH_EVENTS, RedisKeys


def _end_offsets(settings: Settings) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**client_config(settings, Principal.ADMIN), "group.id": "unused"})
    try:
        parts = c.list_topics(MATCH_EVENTS.name, timeout=10).topics[MATCH_EVENTS.name].partitions
        return {p: c.get_watermark_offsets(TopicPartition(MATCH_EVENTS.name, p), timeout=10)[1]
                for p in parts}
    finally:
        c.close()


def _wait_final(settings: Settings, finals: dict[str, int], prefix: str = "",
                timeout: float = 600) -> float:

    r = sync_redis(settings, RedisUser.ADMIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        for m in finals:
            pipe.hget(RedisKeys.position(prefix + m), "seq")
        if [int(s or 0) for s in pipe.execute()] == list(finals.values()):
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError("views did not reach their final seq in time")


class PlainLoop:
    """The baseline: confluent-kafka → decode → fold → viewcommit.lua, one thread, no faust."""

    def __init__(self, settings: Settings, start: dict[int, int],
                 on_commit: Callable[[str, int], None] | None = None) -> None:
        self.settings, self.start, self.on_commit = settings, start, on_commit
        self.stop = threading.Event()
        self.committed = 0

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streams.engine import note_records, view_write
        from streams.pipeline import Accepted, MatchProcessor, MatchState, ScorecardFolder
        from streams.viewstore import lua_source, script_call

        c = Consumer({**client_config(self.settings, Principal.ADMIN),
                      "group.id": "stumpcast-bench-plain", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 10})
        c.assign([TopicPartition(MATCH_EVENTS.name, p, o) for p, o in self.start.items()])
        script = sync_redis(self.settings, RedisUser.ADMIN).register_script(lua_source())
        folder, procs = ScorecardFolder(), {}  # type: ignore[var-annotated]
        while not self.stop.is_set():
            # poll() returns as soon as a message is there; consume(timeout=0) then takes what
            # else is buffered (consume(n, t) alone would wait t for n messages).
            first = c.poll(0.05)
            batch = [first] + c.consume(499, timeout=0) if first is not None else []
            for msg in batch:
                if msg.error():
                    continue
                try:
                    event = codec.decode(msg.value() or b"")
                except ValueError:  # junk on the topic is the worker's DLQ's business
                    continue
                m = "plain-" + event.match_id
                proc = procs.setdefault(m, MatchProcessor(
                    MatchState(m, card=folder.initial(event.match_id)), folder, 5.0, epoch=1))
                for o in proc.offer(event, msg.value(), None, 0.0):
                    if isinstance(o, Accepted):
                        w = view_write(m, 1, event.seq, o.prev_seq, codec.format_ts(event.ts),
                                       o.before, o.after, note_records(o.notes), 0)
                        keys, argv = script_call("commit", w, 2000)
                        script(keys=keys, args=argv)
                        self.committed += 1
                        if self.on_commit:
                            self.on_commit(event.match_id, event.seq)
        c.close()


def _throughput(settings: Settings, n_events: int, tag: str) -> tuple[int, float, float]:
    from streams.producer import scorer_producer

    per_match = 250
    matches = bench_matches(settings.cricsheet_dir, max(1, n_events // per_match), tag, "benchtp")
    start = _end_offsets(settings)
    producer = scorer_producer(settings, "cricsheet", linger_ms=5)
    total = sum(len(v) for v in matches.values())
    t0 = time.monotonic()
    for events in matches.values():
        for e in events:
            producer.send(e)
    producer.flush()
    worker_s = _wait_final(settings, {m: len(v) for m, v in matches.items()}) - t0
    plain = PlainLoop(settings, start)
    thread = threading.Thread(target=plain.run, daemon=True)
    t1 = time.monotonic()
    thread.start()
    plain_s = _wait_final(settings, {m: len(v) for m, v in matches.items()}, "plain-") - t1
    plain.stop.set()
    thread.join(10)
    return total, total / worker_s, total / plain_s


class HistoryReader:
    """Receipt times of history entries (XREAD BLOCK), as the gateway would see them."""

    def __init__(self, settings: Settings, match_ids: list[str]) -> None:
        self.settings, self.match_ids = settings, match_ids
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:

        r: Any = sync_redis(self.settings, RedisUser.ADMIN)
        last: dict[Any, Any] = {RedisKeys.history(m): "0-0" for m in self.match_ids}
        key_to_match = {RedisKeys.history(m): m for m in self.match_ids}
        while not self.stop.is_set():
            for key, entries in r.xread(last, block=200) or []:
                now = time.time()
                k = key.decode()
                for entry_id, _ in entries:
                    last[k] = entry_id.decode()
                    self.seen[(key_to_match[k], int(last[k].split("-")[0]))] = now


WARM_UP = 5  # events per match before the measured window (first sight, recovery)


def _latency(settings: Settings, rate_per_match: float, seconds: float,
             tag: str) -> tuple[list[float], list[float]]:
    """(worker latencies, plain-loop latencies) in ms, 10 matches at ``rate_per_match``."""
    from streams.producer import scorer_producer

    matches = bench_matches(settings.cricsheet_dir, 10, tag, f"benchlat{int(rate_per_match)}")
    sent: dict[tuple[str, int], float] = {}
    plain_seen: dict[tuple[str, int], float] = {}
    reader = HistoryReader(settings, list(matches))
    plain = PlainLoop(settings, _end_offsets(settings),
                      on_commit=lambda m, s: plain_seen.__setitem__((m, s), time.time()))
    threads = [threading.Thread(target=t.run, daemon=True) for t in (reader, plain)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the plain consumer is assigned
    producer = scorer_producer(settings, "cricsheet", linger_ms=0)
    n = int(seconds * rate_per_match)
    interval, ids = 1.0 / rate_per_match, list(matches)
    t0 = time.monotonic()
    for i in range(n):
        if i == WARM_UP:  # a live match exists long before its balls: measure steady state
            time.sleep(2.0)
            t0 += 2.0
        for j, m in enumerate(ids):
            due = t0 + i * interval + j * interval / len(ids)
            time.sleep(max(0.0, due - time.monotonic()))
            event = matches[m][i % len(matches[m])]
            sent[(m, event.seq)] = time.time()
            producer.send(event)
    producer.flush()
    time.sleep(2.0)
    reader.stop.set()
    plain.stop.set()
    for t in threads:
        t.join(10)

    def lat(seen: dict[tuple[str, int], float]) -> list[float]:
        return [(seen[k] - ts) * 1000 for k, ts in sent.items() if k[1] > WARM_UP and k in seen]

    return lat(reader.seen), lat(plain_seen)


def _fmt(values: list[float]) -> str:
    if not values:
        return "no samples"
    p50, p99 = benchlog.percentile(values, 50), benchlog.percentile(values, 99)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(values)})"


def _group_members(settings: Settings) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings, Principal.ADMIN))
    futures = admin.describe_consumer_groups([GROUP_STREAMS])
    return len(futures[GROUP_STREAMS].result(timeout=10).members)


PARTS = ("throughput", "latency", "faults")


def parse_parts(text: str) -> set[str]:
    """``--parts``: a comma-separated subset of PARTS (ValueError names the bad one)."""
    parts = {p.strip() for p in text.split(",") if p.strip()}
    bad = sorted(parts - set(PARTS))
    if bad or not parts:
        raise ValueError(f"--parts: {', '.join(bad) or 'nothing'} is not one of "
                         f"{', '.join(PARTS)}")
    return parts


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    parts = parse_parts(args.parts)
    tag = uuid.uuid4().hex[:6]
    log = Path(settings.run_dir) / "logs" / f"bench-streams-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if parts & {"throughput", "latency"}:
        rows = _steady(settings, args, parts, tag, log)
        if not args.no_record:
            benchlog.record("streams: worker throughput and produce→Redis latency", rows,
                            notes="Targets: p99 ≤ 50 ms at the live-like rate; throughput "
                            "within 2x of the plain loop. Worker = faust agent, fold, "
                            "notifications, Lua commit, scorecards topic, Cassandra store; plain "
                            "loop = decode, fold, Lua commit only. Latency = produce() call to "
                            "XREAD receipt.")
    if "faults" in parts:
        from bench.streams_faults import NOTES, run_faults

        _wait_group_empty(settings)
        rows = run_faults(settings, tag, log, args.fault_speed, args.fault_matches)
        for name, value in rows:
            print(f"{name}: {value}")
        if not args.no_record:
            benchlog.record("streams: view staleness when partitions move, recovery after a "
                            "SIGKILL", rows, notes=NOTES)
    return 0


def _wait_group_empty(settings: Settings, timeout: float = 30.0) -> None:
    """The fault run must own the streams group: a worker left running elsewhere would take
    partitions (a static member of an earlier run leaves after its session timeout)."""
    deadline = time.monotonic() + timeout
    while (members := _group_members(settings)) and time.monotonic() < deadline:
        time.sleep(1.0)
    if members:
        raise RuntimeError(f"{members} other member(s) in {GROUP_STREAMS}: stop every "
                           "`stumpcast streams worker` on this stack first")


def _steady(settings: Settings, args: argparse.Namespace, parts: set[str], tag: str,
            log: Path) -> list[tuple[str, str]]:
    worker, _port = start_worker(log, f"bench-{tag}")
    try:
        rows = [("group members during the run", str(_group_members(settings)))]
        if "throughput" in parts:
            rows += _throughput_rows(settings, args, tag)
        if "latency" in parts:
            for rate in (1.0, 10.0):
                w, p = _latency(settings, rate, args.seconds, tag)
                label = f"10 matches x {rate:g} ev/s ({10 * rate:g} ev/s)"
                print(f"latency {label}: worker {_fmt(w)}; plain {_fmt(p)}")
                rows += [(f"produce→Redis, worker, {label}", _fmt(w)),
                         (f"produce→Redis, plain loop, {label}", _fmt(p))]
        rows.append(("group members at the end", str(_group_members(settings))))
    finally:
        stop_worker(worker)
    return rows


def _throughput_rows(settings: Settings, args: argparse.Namespace,
                     tag: str) -> list[tuple[str, str]]:
    rounds = [_throughput(settings, args.events, f"{tag}r{i}")
              for i in range(max(1, args.rounds))]
    for i, (total, w_eps, p_eps) in enumerate(rounds, 1):
        print(f"throughput round {i}: {total} events; worker {w_eps:.0f}/s, plain loop "
              f"{p_eps:.0f}/s (ratio {p_eps / w_eps:.2f})")
    total = rounds[0][0]
    worker_eps = statistics.median(r[1] for r in rounds)
    plain_eps = statistics.median(r[2] for r in rounds)
    ratios = sorted(r[2] / r[1] for r in rounds)
    return [("throughput, worker (--speed 0)",
             f"median {worker_eps:.0f} events/s over {len(rounds)} rounds of {total} events "
             f"({', '.join(f'{r[1]:.0f}' for r in rounds)})"),
            ("throughput, plain confluent→Redis loop",
             f"median {plain_eps:.0f} events/s ({', '.join(f'{r[2]:.0f}' for r in rounds)})"),
            ("plain / worker, per round", f"median {statistics.median(ratios):.2f} "
             f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")]
