"""``stumpcast bench streams``, faults: view staleness when partitions move, recovery after a
SIGKILL, with real ``stumpcast streams worker`` processes during live replays.

Six matches are replayed live (``streams.producer.pace`` at ``--fault-speed``, 120x by default:
a ball every ~0.3 s per match) while the consumer group changes under them:

1. a worker joins (A runs; B starts): a rebalance;
2. that worker leaves gracefully (SIGTERM to B): a rebalance;
3. a worker with static membership (C, ``STUMPCAST_STREAMS_INSTANCE_ID``) joins;
4. C is SIGKILLed and restarted at once under the same id, as a supervisor would;
5. C is SIGKILLed again and not restarted: A takes its partitions once the session times out.

The figure for one match at one fault is how long the match's view stood still with an event
waiting: the largest delay, from ``produce()`` to the event's receipt on a Redis ``XREAD`` of
the match's history (what the gateway sees), among the match's events produced from the fault
until the next one. An event produced as the partition stops waits until the view moves again,
so this is the time from the partition move to the view moving again (to within one ball, ~0.3
s at 120x). A join or a leave pauses every partition (faust's rebalancing is eager), so it is
reported over every match; a kill over the matches whose partitions the killed worker held
(from the group's assignment just before the kill).
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
from runtime.redisconn import sync_redis
from schemas.events import Event
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import GROUP_STREAMS, MATCH_EVENTS, RedisKeys

Fault = tuple[str, float, set[str] | None]   # what, when, the matches held (None: every one)
STUCK_S = 30.0   # a view that has not moved again after this long is reported as stuck
NOTES = ("Live replays (streams.producer.pace, 120x) of 6 Cricsheet matches, one real `stumpcast "
         "streams worker` process per worker, on the shared 2-core machine with Kafka, "
         "Cassandra and Redis: single runs, noisy. Staleness of a match at a fault = the "
         "longest produce()→XREAD-receipt delay of its events produced from that fault to the "
         "next (the time its view stood still with an event waiting); 30 s = not seen within "
         "30 s (stuck). faust rebalances eagerly, so a join or leave pauses every match.")


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
    # cleared: the replay pauses (``stumpcast chaos`` checkpoints), the clock of the replay
    # with it, so the matches go on where they stopped
    running: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.running.set()

    def produce(self) -> None:
        from confluent_kafka import Producer

        from runtime.kafka import client_config
        from runtime.secrets import signer
        from schemas import codec
        from streams.producer import pace, producer_config, scorer_principal

        # As the replay's scorer: its Kafka principal and its signing key (#15).
        kafka = client_config(self.settings, scorer_principal("cricsheet"))
        p = Producer(producer_config(kafka, 0))
        sign = signer(self.settings, "cricsheet").sign
        queue = sorted((due, e.match_id, e.seq, e) for m in self.matches.values()
                       for due, e in pace(m, self.speed))
        t0 = time.monotonic()
        for due, match_id, seq, event in queue:
            if self.stop.wait(max(0.0, t0 + due - time.monotonic())):
                break
            if not self.running.is_set():
                paused = time.monotonic()
                while not self.running.wait(0.2) and not self.stop.is_set():
                    p.poll(0)
                t0 += time.monotonic() - paused
            if self.stop.is_set():
                break
            self.sent[(match_id, seq)] = time.time()
            p.produce(MATCH_EVENTS.name, sign(codec.encode(event)), key=match_id.encode(),
                      on_delivery=self._delivered)
            p.poll(0)
        p.flush(30)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:   # the partition of a match: whose worker held it at a kill
            self.partition[msg.key().decode()] = msg.partition()

    def read(self) -> None:

        r: Any = sync_redis(self.settings, RedisUser.ADMIN)
        last: dict[Any, Any] = {RedisKeys.history(m): "0-0" for m in self.matches}
        match_of = {RedisKeys.history(m): m for m in self.matches}
        while not self.stop.is_set():
            for key, entries in r.xread(last, block=200) or []:
                now = time.time()
                k = key.decode()
                for entry_id, _ in entries:
                    last[k] = entry_id.decode()
                    self.seen.setdefault((match_of[k], int(last[k].split("-")[0])), now)

    def staleness(self, match_id: str, start: float, end: float) -> float | None:
        """The largest produce→view delay of the match's events produced in [start, end), in
        seconds, capped at STUCK_S (an event never seen counts as stuck); None: none sent."""
        delays = [min(STUCK_S, self.seen.get((m, s), sent + STUCK_S) - sent)
                  for (m, s), sent in self.sent.items() if m == match_id and start <= sent < end]
        return max(delays) if delays else None


class GroupWatch:
    """Which static member holds which partitions, polled every 0.1 s (AdminClient)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka.admin import AdminClient

        from runtime.kafka import client_config
        from schemas.access import Principal

        self.admin = AdminClient(client_config(settings, Principal.ADMIN))
        self.owners: dict[str, set[int]] = {}   # instance id -> partitions (latest seen)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                desc = self.admin.describe_consumer_groups([GROUP_STREAMS])[GROUP_STREAMS] \
                    .result(timeout=5)
            except Exception:   # the broker is busy: the next poll tells
                continue
            owners = {}
            for m in desc.members:
                if m.group_instance_id and m.assignment is not None:
                    owners[m.group_instance_id] = {tp.partition for tp in
                                                   m.assignment.topic_partitions
                                                   if tp.topic == MATCH_EVENTS.name}
            if owners:
                self.owners = owners


def run_faults(settings: Settings, tag: str, log: Path, speed: float,
               n_matches: int) -> list[tuple[str, str]]:
    """Run the faults during live replays; the rows for BENCHMARKS.md."""
    matches = bench_matches(settings.cricsheet_dir, n_matches, tag, "benchfault")
    live = Live(settings, matches, speed)
    watch = GroupWatch(settings)
    a, _ = start_worker(log)
    threads = [threading.Thread(target=t, daemon=True) for t in (live.read, watch.run)]
    for th in threads:
        th.start()
    faults: list[Fault] = []
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
              procs: list[subprocess.Popen[bytes]]) -> list[Fault]:
    """The faults, ~12 s apart so each one's effect has passed before the next."""
    out: list[Fault] = []
    wait_in_play(live)
    out.append(("a worker joins", time.time(), None))
    b, _ = start_worker(log)
    procs.append(b)
    time.sleep(12)
    out.append(("a worker leaves (SIGTERM)", time.time(), None))
    stop_worker(b)
    time.sleep(12)
    static = f"bench-faults-{tag}"
    out.append(("a worker with static membership joins", time.time(), None))
    c, _ = start_worker(log, static)
    procs.append(c)
    time.sleep(12)
    for what, restart in (("SIGKILL, restarted at once (static membership)", True),
                          ("SIGKILL, not restarted (its partitions move after the 10 s "
                           "session timeout)", False)):
        held = _matches_of(live, watch.owners.get(static, set()))
        out.append((what, time.time(), held))
        c.send_signal(signal.SIGKILL)
        c.wait(10)
        if restart:
            c, _ = start_worker(log, static)
            procs.append(c)
            time.sleep(12)
    return out


def wait_in_play(live: Live, balls: int = 10, timeout: float = 180.0) -> None:
    """Until every match has sent ``balls`` events and a few seconds more (a replay's first
    event, match.created, comes long before its first ball)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(m == match and s > balls for m, s in list(live.sent))
               for match in live.matches):
            break
        time.sleep(0.5)
    time.sleep(3.0)


def _matches_of(live: Live, partitions: set[int]) -> set[str]:
    return {m for m, p in live.partition.items() if p in partitions}


def _pending(live: Live) -> list[tuple[str, int]]:
    return [k for k in live.sent if k not in live.seen]


def _rows(live: Live, faults: list[Fault]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    ends = [t for _, t, _ in faults[1:]] + [faults[-1][1] + STUCK_S]
    for (what, t, held), end in zip(faults, ends, strict=True):
        matches = sorted(held if held is not None else live.matches)
        values = [v for m in matches if (v := live.staleness(m, t, end)) is not None]
        stuck = sum(1 for v in values if v >= STUCK_S)
        label = "view staleness" if held is None else "recovery (view moving again)"
        scope = "every match" if held is None else "the killed worker's matches"
        rows.append((f"{label}: {what}", _summary(values, stuck, scope)))
    first = faults[0][1]
    for name, keep in (("before the first fault (baseline)", lambda sent: sent < first),
                       ("over the whole run, faults included", lambda sent: True)):
        delays = [(live.seen[k] - sent) * 1000 for k, sent in live.sent.items()
                  if k in live.seen and keep(sent)]
        if delays:
            rows.append((f"produce→view {name}",
                         f"p50 {benchlog.percentile(delays, 50):.0f} ms, "
                         f"p99 {benchlog.percentile(delays, 99):.0f} ms (n={len(delays)})"))
    rows.append(("events never in their view", f"{len(_pending(live))} of {len(live.sent)}"))
    return rows


def _summary(values: list[float], stuck: int, scope: str) -> str:
    if not values:
        return f"no samples ({scope}: none held or none had events left)"
    text = (f"p50 {benchlog.percentile(values, 50):.2f} s, max {max(values):.2f} s "
            f"over {len(values)} matches ({scope})")
    if stuck:
        text += f"; {stuck} still stale after {STUCK_S:.0f} s"
    return text
