"""``stumpcast bench streams``, faults: view staleness when partitions move, recovery after a
SIGKILL, with real ``stumpcast streams worker`` processes during live replays.

Six matches are replayed live (``streams.producer.pace`` at ``--fault-speed``, 120x by default:
a ball every ~0.3 s per match) while the consumer group changes under them:

1. a worker joins (A runs; B starts): a rebalance;
2. that worker leaves gracefully (SIGTERM to B): a rebalance;
3. a worker with static membership (C, ``STUMPCAST_STREAMS_INSTANCE_ID``) joins, is SIGKILLed
   and restarted at once under the same id, as a supervisor would;
4. C is SIGKILLed again and not restarted: A takes its partitions once the session times out.

The figure for one match at one fault is the time from the fault to the view moving again:
from ``t`` (the first rebalancing state the group reports after a join or leave; the signal
for a kill) to the receipt, on a Redis ``XREAD`` of the match's history (what the gateway
sees), of the first event the view did not hold at ``t``. If that event was produced after
``t`` (the match was between balls), the time counts from its production instead, so the
wait for the next ball is not counted. A join or a leave pauses every partition (faust's
rebalancing is eager), so it is reported over every match; a kill over the matches whose
partitions the killed worker held (from the group's assignment just before the kill).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import log as benchlog
from bench.workers import bench_matches, start_worker, stop_worker
from schemas.events import Event
from schemas.settings import Settings
from schemas.topology import GROUP_STREAMS, MATCH_EVENTS, RedisKeys

STUCK_S = 30.0   # a view that has not moved again after this long is reported as stuck
NOTES = ("Live replays (streams.producer.pace) of 6 Cricsheet matches, one real `stumpcast "
         "streams worker` process per worker, on the shared 2-core machine with Kafka, "
         "Cassandra and Redis: single runs, noisy. Staleness = from the fault (the group's first "
         "rebalancing state after a join or leave; the SIGKILL) to the XREAD receipt of the "
         "first event the view did not hold then, counted from that event's production if it "
         "came later. faust rebalances eagerly, so a join or leave pauses every match.")


@dataclass
class Live:
    """The replays (one producer thread) and what they left in Redis, with times."""

    settings: Settings
    matches: dict[str, list[Event]]
    speed: float
    sent: dict[tuple[str, int], float] = field(default_factory=dict)
    partition: dict[str, int] = field(default_factory=dict)
    seen: dict[tuple[str, int], float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def produce(self) -> None:
        from confluent_kafka import Producer

        from schemas import codec
        from streams.producer import pace, producer_config

        p = Producer(producer_config(self.settings.kafka_bootstrap_str, 0))
        queue = sorted((due, e.match_id, e.seq, e) for m in self.matches.values()
                       for due, e in pace(m, self.speed))
        t0 = time.monotonic()
        for due, match_id, seq, event in queue:
            if self.stop.wait(max(0.0, t0 + due - time.monotonic())):
                break
            self.sent[(match_id, seq)] = time.time()
            p.produce(MATCH_EVENTS.name, codec.encode(event), key=match_id.encode(),
                      on_delivery=self._delivered)
            p.poll(0)
        p.flush(30)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:   # the partition of a match: whose worker held it at a kill
            self.partition[msg.key().decode()] = msg.partition()

    def read(self) -> None:
        import redis

        r: Any = redis.Redis.from_url(self.settings.redis_url)
        last: dict[Any, Any] = {RedisKeys.history(m): "0-0" for m in self.matches}
        match_of = {RedisKeys.history(m): m for m in self.matches}
        while not self.stop.is_set():
            for key, entries in r.xread(last, block=200) or []:
                now = time.time()
                k = key.decode()
                for entry_id, _ in entries:
                    last[k] = entry_id.decode()
                    self.seen.setdefault((match_of[k], int(last[k].split("-")[0])), now)

    def held_at(self, match_id: str, t: float) -> int:
        return max((s for (m, s), at in self.seen.items() if m == match_id and at <= t),
                   default=0)

    def staleness(self, match_id: str, t: float) -> float | None:
        """Seconds from ``t`` to the view moving past what it held at ``t`` (None: stuck, or
        the match had nothing left to send)."""
        held = self.held_at(match_id, t)
        later = sorted(s for (m, s) in self.sent if m == match_id and s > held)
        if not later:
            return None
        first = later[0]
        at = self.seen.get((match_id, first))
        if at is None:
            return STUCK_S
        return min(STUCK_S, at - max(t, self.sent[(match_id, first)]))


class GroupWatch:
    """The streams group's state and assignment, polled every 0.1 s (AdminClient)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_str})
        self.states: list[tuple[float, str]] = []
        self.owners: dict[str, set[int]] = {}   # instance id -> partitions (latest seen)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                desc = self.admin.describe_consumer_groups([GROUP_STREAMS])[GROUP_STREAMS] \
                    .result(timeout=5)
            except Exception:   # the broker is busy: the next poll tells
                continue
            self.states.append((time.time(), desc.state.name))
            owners = {}
            for m in desc.members:
                if m.group_instance_id and m.assignment is not None:
                    owners[m.group_instance_id] = {tp.partition for tp in
                                                   m.assignment.topic_partitions
                                                   if tp.topic == MATCH_EVENTS.name}
            if owners:
                self.owners = owners

    def rebalance_after(self, t: float, timeout: float = 20.0) -> float:
        """When the group first reported a rebalancing state after ``t`` (else ``t``)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, state in self.states:
                if at >= t and state != "STABLE":
                    return at
            time.sleep(0.1)
        return t


def run_faults(settings: Settings, tag: str, log: Path, speed: float,
               n_matches: int) -> list[tuple[str, str]]:
    """Run the four faults during live replays; the rows for BENCHMARKS.md."""
    matches = bench_matches(settings.cricsheet_dir, n_matches, tag, "benchfault")
    live = Live(settings, matches, speed)
    watch = GroupWatch(settings)
    a, _ = start_worker(log)
    threads = [threading.Thread(target=t, daemon=True) for t in (live.read, watch.run)]
    for th in threads:
        th.start()
    faults: list[tuple[str, float, set[str] | None]] = []
    procs = [a]
    try:
        time.sleep(1.0)
        producer = threading.Thread(target=live.produce, daemon=True)
        producer.start()
        faults += _schedule(live, watch, log, tag, procs)
        producer.join(600)
        time.sleep(STUCK_S if any(_pending(live)) else 3.0)
    finally:
        live.stop.set()
        watch.stop.set()
        for proc in procs:
            stop_worker(proc)
        for th in threads:
            th.join(10)
    return _rows(live, faults)


def _schedule(live: Live, watch: GroupWatch, log: Path, tag: str,
              procs: list[subprocess.Popen[bytes]]) -> list[tuple[str, float, set[str] | None]]:
    out: list[tuple[str, float, set[str] | None]] = []
    time.sleep(10)
    t = time.time()
    b, _ = start_worker(log)
    procs.append(b)
    out.append(("a worker joins", watch.rebalance_after(t), None))
    time.sleep(10)
    t = time.time()
    stop_worker(b)
    out.append(("a worker leaves (SIGTERM)", watch.rebalance_after(t), None))
    static = f"bench-faults-{tag}"
    c, _ = start_worker(log, static)
    procs.append(c)
    time.sleep(10)
    for what, restart in (("SIGKILL, restarted at once (static membership)", True),
                          ("SIGKILL, not restarted (its partitions move after the 10 s "
                           "session timeout)", False)):
        held = _matches_of(live, watch.owners.get(static, set()))
        t = time.time()
        c.send_signal(signal.SIGKILL)
        c.wait(10)
        out.append((what, t, held))
        if restart:
            c, _ = start_worker(log, static)
            procs.append(c)
            time.sleep(12)
    return out


def _matches_of(live: Live, partitions: set[int]) -> set[str]:
    return {m for m, p in live.partition.items() if p in partitions}


def _pending(live: Live) -> list[tuple[str, int]]:
    return [k for k in live.sent if k not in live.seen]


def _rows(live: Live, faults: list[tuple[str, float, set[str] | None]]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for what, t, held in faults:
        matches = sorted(held if held is not None else live.matches)
        values = [v for m in matches if (v := live.staleness(m, t)) is not None]
        stuck = sum(1 for v in values if v >= STUCK_S)
        label = "view staleness" if held is None else "recovery (view moving again)"
        scope = "every match" if held is None else "the killed worker's matches"
        rows.append((f"{label}: {what}", _summary(values, stuck, scope)))
    normal = [(live.seen[k] - live.sent[k]) * 1000 for k in live.sent if k in live.seen]
    if normal:
        rows.append(("produce→view during the fault run (all events, faults included)",
                     f"p50 {benchlog.percentile(normal, 50):.0f} ms, "
                     f"p99 {benchlog.percentile(normal, 99):.0f} ms (n={len(normal)})"))
    missing = len(_pending(live))
    rows.append(("events never in their view", f"{missing} of {len(live.sent)}"))
    return rows


def _summary(values: list[float], stuck: int, scope: str) -> str:
    if not values:
        return f"no samples ({scope}: none held or none had events left)"
    text = (f"p50 {benchlog.percentile(values, 50):.2f} s, max {max(values):.2f} s "
            f"over {len(values)} matches ({scope})")
    if stuck:
        text += f"; {stuck} still stale after {STUCK_S:.0f} s"
    return text
