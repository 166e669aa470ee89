"""``stumpcast chaos``: faults injected one at a time and then together while matches are replayed
live to WebSocket clients connected through HAProxy, with the views checked after every fault.

A round: the replay runs; the fault is injected; the killed or paused thing is brought back
after its hold (as a supervisor would); play goes on to the end of the window; then the replay
pauses (a checkpoint), the suite waits until every view settles and checks that

* every card in Redis, in Cassandra (the events read at QUORUM, folded), at the card clients
  (one ``gateway.client`` per match) and at every load client (the snapshot it got and each
  update it got, applied in order) equals the pure fold of the events produced so far;
* every notification derived from those events is on Kafka exactly once;
* every load client is connected and at the final position of its match;
* the dead-letter topic got nothing.

The figures of each round come from ``bench.chaos_core``; the clients and the read-back from
``bench.chaos_io``; the services and the faults from ``stumpcast.stack.chaos_faults``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import chaos_core as core
from bench.chaos_core import ChaosError
from bench.chaos_io import (
    CardClients,
    Clients,
    offsets_now,
    read_since,
    redis_views,
    stored_events,
)
from bench.streams_faults import Live, wait_in_play
from bench.workers import bench_matches
from schemas.settings import Settings
from schemas.topology import MATCH_EVENTS_DLQ, NOTIFICATIONS
from stumpcast.stack.chaos_faults import (
    Fault,
    Services,
    check_capacity,
    check_stack,
    make_fault,
)

Say = Callable[[str], None]
NOTES = ("Cricsheet matches (cricsheet.org) replayed live through 3 streams workers, 2 gateways "
         "behind HAProxy, 2 analytics workers and 2 notifiers on Kafka x3, Cassandra x3 "
         "(LOCAL_QUORUM) and a 3+3 Redis Cluster, on the shared 2-core machine (single run, "
         "noisy). Views moving again: the longest produce→first-client delay of the events "
         "produced from the fault to its checkpoint; staleness: the same to the last client.")


@dataclass
class Run:
    settings: Settings
    plan: core.Plan
    log_dir: Path
    say: Say
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    rx_first: dict[core.Key, float] = field(default_factory=dict)
    rx_last: dict[core.Key, float] = field(default_factory=dict)
    counts: core.ClientCounts = field(default_factory=core.ClientCounts)
    dead_letters: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    replay_failed: str = ""

    def __post_init__(self) -> None:
        self.matches = bench_matches(self.settings.cricsheet_dir, self.plan.matches, self.tag,
                                     "chaos")
        self.ids = sorted(self.matches)
        # the shortest match: every match is still being played at the last fault
        shortest = min((ev[-1].ts - ev[0].ts).total_seconds() for ev in self.matches.values())
        self.speed = self.plan.replay_speed(shortest)
        self.live = Live(self.settings, self.matches, self.speed)


def run(settings: Settings, plan: core.Plan, log_dir: Path, say: Say
        ) -> list[core.FaultFigures]:
    """The whole suite; the figures of every round (a round whose checks failed has
    ``problems``). Everything it starts is stopped before it returns."""
    check_stack(settings)
    # HAProxy (started from here) sizes maxconn by its file limit: two descriptors per client
    check_capacity(plan.clients + plan.matches)
    log_dir.mkdir(parents=True, exist_ok=True)
    r = Run(settings, plan, log_dir, say)
    say(f"chaos {r.tag}: {plan.matches} matches at {r.speed:.0f}x, {plan.clients} clients "
        f"through HAProxy :{settings.stack_lb_port}; logs in {log_dir}")
    since = offsets_now(settings)
    services = Services(settings, log_dir, r.tag)
    clients = cards = None
    producer = threading.Thread(target=_produce, args=(r,), daemon=True)
    out: list[core.FaultFigures] = []
    try:
        services.wait_ready()
        services.wait_lb()
        clients = Clients(settings, plan.client_procs)
        producer.start()
        _wait_views_exist(r)   # a viewer subscribes to a match that is live
        clients.connect(plan.clients, r.ids)
        cards = CardClients(settings, r.ids)
        wait_in_play(r.live, balls=5)   # warm up: every match under way, past its toss
        r.reports = clients.call("counts")   # the first subscriptions are not a fault's cost
        r.counts = core.ClientCounts.total(r.reports)
        _merge(r)
        for name in plan.faults:
            out.append(_round(r, name, services, clients, cards, since))
            say(": ".join(out[-1].row()))
            for p in out[-1].problems:
                say(f"  CHECK FAILED: {p}")
    finally:
        r.live.stop.set()
        r.live.running.set()
        if producer.is_alive():
            producer.join(30)
        for part in (cards, clients):
            if part is not None:
                part.stop()
        services.stop()
    return out


def _produce(r: Run) -> None:
    try:
        r.live.produce()
    except Exception as exc:   # reported by the next checkpoint, as a failed check
        r.replay_failed = f"{type(exc).__name__}: {exc}"


def _wait_views_exist(r: Run, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(seq == 0 for seq, _ in redis_views(r.settings, r.ids).values()):
        if time.monotonic() > deadline:
            raise ChaosError("the replays did not reach the views within 60 s: see "
                             f"{r.log_dir}/streams-*.log")
        time.sleep(0.5)


def _round(r: Run, name: str, services: Services, clients: Clients, cards: CardClients,
           since: dict[str, dict[int, int]]) -> core.FaultFigures:
    names = core.TOGETHER_FAULTS if name == core.TOGETHER else (name,)
    faults = [make_fault(n, r.settings, services, r.ids) for n in names]
    r.live.running.set()
    start = time.time()
    for f in faults:
        f.inject()
    r.say(f"{name}: " + ", ".join(f"{f.name} {f.what}" for f in faults))
    unrestored = _restore_after_holds(faults, start)
    time.sleep(max(0.0, start + r.plan.window - time.time()))
    r.live.running.clear()           # checkpoint: the replays pause
    end = time.time()
    dead = r.dead_letters
    problems = unrestored + _checkpoint(r, clients, cards, since)
    sent = {k: t for k, t in r.live.sent.items() if start <= t < end}
    first = core.covered_at(r.rx_first, sent)
    last = core.covered_at(r.rx_last, sent)
    counts = r.counts
    r.counts = core.ClientCounts.total(r.reports)
    return core.FaultFigures(name, core.worst_delay(sent, first, start, end),
                             core.worst_delay(sent, last, start, end), r.counts.minus(counts),
                             r.dead_letters - dead, problems)


def _restore_after_holds(faults: list[Fault], start: float) -> list[str]:
    """Each fault restored after its hold; in threads, since a Cassandra node takes ~20 s.
    What could not be restored, one line each."""
    failed: list[str] = []

    def restore(f: Fault) -> None:
        time.sleep(max(0.0, start + f.hold - time.time()))
        try:
            f.restore()
        except Exception as exc:   # the round fails; the suite stops what it started
            failed.append(f"{f.name}: not restored: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=restore, args=(f,)) for f in faults]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return failed


def _checkpoint(r: Run, clients: Clients, cards: CardClients,
                since: dict[str, dict[int, int]]) -> list[str]:
    """Wait until every view settles (or the settle time is up), then check them all."""
    from streams.pipeline import ScorecardFolder, all_notes, replay_state

    time.sleep(1.0)   # the producer's last delivery
    produced: dict[str, int] = {}
    for (m, s) in list(r.live.sent):
        produced[m] = max(produced.get(m, 0), s)
    states = {m: replay_state(m, r.matches[m][:produced.get(m, 0)], ScorecardFolder())
              for m in r.ids}
    folds = {m: st.doc for m, st in states.items()}
    views, stored, lagging = _settle(r, clients, produced)
    problems = [f"the replay stopped: {r.replay_failed}"] if r.replay_failed else []
    problems += lagging
    problems += core.card_problems("redis", folds, {m: c for m, (_, c) in views.items()})
    problems += core.card_problems("cassandra (QUORUM)", folds, {
        m: replay_state(m, ev, ScorecardFolder()).doc for m, ev in stored.items()})
    problems += core.card_problems("websocket card client", folds, cards.cards())
    problems += core.client_card_problems(folds, [c for rep in r.reports for c in rep["cards"]])
    want = {m: [n.id for n in all_notes(st)] for m, st in states.items()}
    problems += _notes(r, want, since)
    dlq = read_since(r.settings, MATCH_EVENTS_DLQ.name, since[MATCH_EVENTS_DLQ.name])
    r.dead_letters = len(dlq)
    if dlq:
        problems.append(f"dead-letter topic: {len(dlq)} events (first: "
                        f"{dlq[0][1][:120]!r})")
    return problems


def _settle(r: Run, clients: Clients, produced: dict[str, int]
            ) -> tuple[dict[str, tuple[int, Any]], dict[str, list[Any]], list[str]]:
    """Redis views, stored events and client positions, looked at every second until they
    are all at the produced positions or the settle time is up (then: what still lags)."""
    deadline = time.monotonic() + r.plan.settle
    while True:
        try:
            views = redis_views(r.settings, r.ids)
            stored = stored_events(r.settings, r.ids)   # written behind the views: may lag
            unreadable = []
        except Exception as exc:   # a store still electing or rejoining: the next look tells
            unreadable = [f"a store could not be read: {type(exc).__name__}: {exc}"]
            views, stored = {}, {}
        r.reports = clients.call("counts")
        _merge(r)
        positions = [p for rep in r.reports for p in rep["positions"]]
        lagging = unreadable + core.lag_problems(
            produced, {m: seq for m, (seq, _) in views.items()},
            {m: len(ev) for m, ev in stored.items()}, positions)
        if not lagging or time.monotonic() > deadline:
            return views, stored, lagging
        time.sleep(1.0)


def _notes(r: Run, want: dict[str, list[str]], since: dict[str, dict[int, int]]) -> list[str]:
    """The notifications on Kafka, read until they are all there (the views can lead the
    relay's last transaction) or 30 s pass."""
    deadline = time.monotonic() + 30
    while True:
        sent: dict[str, list[str]] = {m: [] for m in r.ids}
        for key, value in read_since(r.settings, NOTIFICATIONS.name, since[NOTIFICATIONS.name]):
            if key in sent:
                sent[key].append(orjson.loads(value)["id"])
        problems = core.note_problems(want, sent)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1.0)


def _merge(r: Run) -> None:
    first, last = core.merge_receipts(r.reports)
    for k, t in first.items():
        r.rx_first[k] = min(t, r.rx_first.get(k, t))
    for k, t in last.items():
        r.rx_last[k] = max(t, r.rx_last.get(k, t))


def rows(figures: list[core.FaultFigures], plan: core.Plan, load: str,
         took: float) -> list[tuple[str, str]]:
    out = [("run", f"{plan.clients} clients, {plan.matches} matches, window {plan.window:.0f} "
                   f"s, {len(figures)} rounds in {took:.0f} s; load average {load}")]
    out += [f.row() for f in figures]
    failed = sum(1 for f in figures if f.problems)
    out.append(("checks", "every round passed" if not failed else
                f"{failed} of {len(figures)} rounds FAILED"))
    return out


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"

