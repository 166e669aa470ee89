"""``stumpcast chaos``, the pure part: the faults, the plan, the checks and the per-fault figures.

No process, socket or clock in here (the shells, ``bench.chaos_io`` and
``stumpcast.stack.chaos``, do those and hand the results in), so every rule below is unit
tested on plain data.

The figures of one fault come from the receipt times of the WebSocket load clients (first and
last receipt of each ``(match, seq)`` over every client) and the produce time of each event:

* **views moving again**: the largest delay, over the events produced from the fault to the
  checkpoint, from ``produce()`` to the *first* client that held the event. An event produced
  as the pipeline stops waits until the views move again, so this is the time the views stood
  still (to within one ball);
* **largest staleness**: the same with the *last* client to hold the event, i.e. the most
  stale view any connected client had (a client that is reconnecting counts here);
* an event no client received as an update but one covered by a later one (a snapshot, or a
  conflated update) counts as held when the next received ``seq`` of its match was.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, int]   # (match id, seq)

# name -> what is done (the order in which `--faults all` runs them, then all of them at once)
FAULTS: dict[str, str] = {
    "kafka-kill": "SIGKILL of the active Kafka controller (a broker too)",
    "cassandra-kill": "SIGKILL of a Cassandra node",
    "redis-kill": "SIGKILL of a Redis master (its replica is promoted)",
    "streams-kill": "SIGKILL of a streams worker, restarted at once (static member id)",
    "gateway-kill": "SIGKILL of a gateway node (its clients reconnect through HAProxy)",
    "kafka-stop": "SIGSTOP of a Kafka broker past its session timeout, then SIGCONT",
    "streams-stop": "SIGSTOP of a streams worker past its session timeout, then SIGCONT",
}
TOGETHER = "together"
# All at once: every SIGKILL, and the worker SIGSTOP on another worker. The broker SIGSTOP is
# left out of it: with the controller killed too, one broker of three would be left and
# ``min.insync.replicas`` 2 would refuse every write until the SIGCONT (a total outage, not a
# fault the cluster is built to absorb).
TOGETHER_FAULTS = ("kafka-kill", "cassandra-kill", "redis-kill", "streams-kill",
                   "gateway-kill", "streams-stop")
STUCK_S = 60.0   # an event not seen this long after it was produced counts as stuck


class ChaosError(Exception):
    """The suite cannot go on (the message says what to do)."""


class PlanError(ValueError):
    """A bad argument of `stumpcast chaos` (the message says which and why)."""


def parse_faults(text: str) -> list[str]:
    """``all`` (each fault alone, then together) or a comma-separated list of fault names and
    ``together``; a name given twice runs twice."""
    if text.strip() == "all":
        return [*FAULTS, TOGETHER]
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PlanError("--faults: name at least one fault (or 'all')")
    unknown = [n for n in names if n not in FAULTS and n != TOGETHER]
    if unknown:
        raise PlanError(f"--faults: unknown {', '.join(unknown)}; choose from "
                        f"{', '.join([*FAULTS, TOGETHER])} or 'all'")
    return names


@dataclass(frozen=True)
class Plan:
    clients: int = 10_000
    matches: int = 6
    faults: tuple[str, ...] = (*FAULTS, TOGETHER)
    window: float = 20.0      # seconds of live play from a fault to its checkpoint
    settle: float = 120.0     # seconds a checkpoint may wait for every view to settle
    client_procs: int = 4
    speed: float = 0.0        # replay speed; 0: so that the matches last the whole schedule

    def check(self) -> Plan:
        if self.clients < 1:
            raise PlanError("--clients must be at least 1")
        if self.matches < 6:
            raise PlanError("--matches must be at least 6 (the issue's live load)")
        if not self.faults:
            raise PlanError("--faults: name at least one fault")
        if self.window < 5:
            raise PlanError("--window must be at least 5 s: a fault needs time to show")
        if self.settle < 10:
            raise PlanError("--settle must be at least 10 s")
        if not 1 <= self.client_procs <= 16:
            raise PlanError("--client-procs must be between 1 and 16")
        if self.speed < 0:
            raise PlanError("--speed must be positive (or 0: automatic)")
        if self.clients < self.client_procs:
            raise PlanError("--clients must be at least --client-procs")
        return self

    def replay_speed(self, match_seconds: float) -> float:
        """The given speed, or one at which the longest match lasts the whole schedule (a warm
        up, every fault's window, and a quarter more) so no fault falls after the last ball
        (the replay pauses at each checkpoint, so only the windows count)."""
        if self.speed:
            return self.speed
        schedule = 1.25 * (10.0 + len(self.faults) * self.window)
        return max(1.0, match_seconds / schedule)


def covered_at(rx: Mapping[Key, float], produced: Iterable[Key]) -> dict[Key, float]:
    """When each produced event was held, from the receipts of received seqs: an event with no
    receipt of its own (a snapshot or a conflated update skipped it) is held when the next
    received seq of its match was; an event after the last received one is not held."""
    received: dict[str, list[int]] = {}
    for m, s in rx:
        received.setdefault(m, []).append(s)
    for seqs in received.values():
        seqs.sort()
    out: dict[Key, float] = {}
    for m, s in produced:
        if (m, s) in rx:
            out[(m, s)] = rx[(m, s)]
            continue
        seqs = received.get(m, [])
        i = bisect.bisect_left(seqs, s)
        if i < len(seqs):
            out[(m, s)] = rx[(m, seqs[i])]
    return out


def worst_delay(sent: Mapping[Key, float], held: Mapping[Key, float], start: float,
                end: float) -> float | None:
    """The largest produce→held delay of the events produced in [start, end), capped at
    STUCK_S (an event never held counts as stuck); None: no event was produced then."""
    delays = [min(STUCK_S, held.get(k, t + STUCK_S) - t) for k, t in sent.items()
              if start <= t < end]
    return max(delays) if delays else None


@dataclass
class ClientCounts:
    """Cumulative counts of the load clients (summed over their processes)."""

    recovered: int = 0       # resumes by position
    not_recovered: int = 0   # resubscriptions answered with a snapshot
    drops: int = 0           # connections lost and reopened
    gaps: int = 0            # an update whose prev_seq was not the client's position

    @classmethod
    def total(cls, reports: Sequence[Mapping[str, Any]]) -> ClientCounts:
        return cls(*(sum(int(r[k]) for r in reports)
                     for k in ("recovered", "not_recovered", "drops", "gaps")))

    def minus(self, before: ClientCounts) -> ClientCounts:
        return ClientCounts(self.recovered - before.recovered,
                            self.not_recovered - before.not_recovered,
                            self.drops - before.drops, self.gaps - before.gaps)


@dataclass
class FaultFigures:
    fault: str
    moving_again_s: float | None
    staleness_s: float | None
    clients: ClientCounts
    dead_letters: int
    problems: list[str] = field(default_factory=list)

    def row(self) -> tuple[str, str]:
        def sec(v: float | None) -> str:
            if v is None:
                return "no events in the window"
            return f"{v:.1f} s" + (" (stuck)" if v >= STUCK_S else "")

        c = self.clients
        text = (f"views moving again {sec(self.moving_again_s)}; largest client staleness "
                f"{sec(self.staleness_s)}; {c.drops} connections dropped, {c.recovered} "
                f"resumed by position, {c.not_recovered} had to take a snapshot; "
                f"{c.gaps} gaps; dead letters {self.dead_letters}; "
                + ("checks passed" if not self.problems else
                   f"{len(self.problems)} CHECKS FAILED"))
        return self.fault, text


def card_problems(where: str, expected: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    """One line per match whose card at ``where`` is not the fold of the events produced."""
    out = []
    for m in sorted(expected):
        if m not in got:
            out.append(f"{where}: no card for {m}")
        elif got[m] != expected[m]:
            out.append(f"{where}: the card of {m} is not the fold of its events "
                       f"({_card_diff(expected[m], got[m])})")
    return out


def client_card_problems(expected: Mapping[str, Any],
                         held: Iterable[tuple[str, Any, int]]) -> list[str]:
    """Every load client's card (``held``: match, card, clients holding it, from each client
    process) against the fold: one line per match with clients whose card is not it (a card
    of ``None``: the client has none, or a gap broke it)."""
    wrong: dict[str, tuple[int, int, str]] = {}
    for m, card, n in held:
        bad, total, first = wrong.get(m, (0, 0, ""))
        if card != expected.get(m):
            bad, first = bad + n, first or ("no card" if card is None else
                                            _card_diff(expected.get(m), card))
        wrong[m] = (bad, total + n, first)
    return [f"load clients: {bad} of {total} clients of {m} hold a card that is not the fold "
            f"of its events ({first})" for m, (bad, total, first) in sorted(wrong.items())
            if bad]


def _card_diff(want: Any, got: Any) -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        return "differs at " + ", ".join(map(str, keys[:5]))
    return f"{str(got)[:60]} != {str(want)[:60]}"


def note_problems(expected: Mapping[str, Sequence[str]],
                  sent: Mapping[str, Sequence[str]]) -> list[str]:
    """Every notification on Kafka exactly once: none missing, none duplicated, none extra."""
    out = []
    for m in sorted(expected):
        counts = Counter(sent.get(m, ()))
        missing = [n for n in expected[m] if counts[n] == 0]
        dups = sorted(n for n, c in counts.items() if c > 1)
        extra = sorted(set(counts) - set(expected[m]))
        if missing:
            out.append(f"notifications of {m}: {len(missing)} missing (first {missing[0]})")
        if dups:
            out.append(f"notifications of {m}: {len(dups)} duplicated (first {dups[0]})")
        if extra:
            out.append(f"notifications of {m}: {len(extra)} not derived from its events "
                       f"(first {extra[0]})")
    return out


def position_problems(finals: Mapping[str, int],
                      positions: Iterable[tuple[str, int, bool]]) -> list[str]:
    """Every load client open and at the final position of its match."""
    closed = behind = 0
    example = ""
    for match, pos, is_open in positions:
        if not is_open:
            closed += 1
        elif pos != finals.get(match, 0):
            behind += 1
            example = example or f"{match} at {pos}, final {finals.get(match, 0)}"
    out = []
    if closed:
        out.append(f"clients: {closed} not connected at the checkpoint")
    if behind:
        out.append(f"clients: {behind} not at the final position ({example})")
    return out


def lag_problems(produced: Mapping[str, int], view_seqs: Mapping[str, int],
                 stored: Mapping[str, int], positions: Iterable[tuple[str, int, bool]]
                 ) -> list[str]:
    """What is not yet at the produced positions: clients, Redis views (their seq), the event
    store (its count of events; they are numbered from 1 without gaps)."""
    return (position_problems(produced, positions)
            + [f"redis: {m} at {seq}, produced {produced.get(m, 0)}"
               for m, seq in sorted(view_seqs.items()) if seq != produced.get(m, 0)]
            + [f"cassandra: {m} has {n} events, produced {produced.get(m, 0)}"
               for m, n in sorted(stored.items()) if n != produced.get(m, 0)])


def merge_receipts(reports: Sequence[Mapping[str, Any]]) -> tuple[dict[Key, float],
                                                                  dict[Key, float]]:
    """The first and the last receipt of each (match, seq) over every client process."""
    first: dict[Key, float] = {}
    last: dict[Key, float] = {}
    for r in reports:
        for k, t in r["rx_first"].items():
            first[k] = min(t, first.get(k, t))
        for k, t in r["rx_last"].items():
            last[k] = max(t, last.get(k, t))
    return first, last
