"""The scenarios of issue #21 in `stumpcast bench gateway --scenarios ...`, against a target.

A target is our gateway in W processes (``--workers 1,2``), its three floors (the same gateway
on ``baselines.FloorHub``, the Python floor; on ``baselines.SyscallHub``, one ``os.write`` per
socket: the syscall floor; on ``baselines.NativeHub``, every socket in one native call with no
checks: the native floor), or the peer (``--peer centrifugo``: ``bench/gateway/peer.py``). The
same load clients (``loadclient``, speaking the target's protocol) and the same update records
(real cards, ~416 bytes) are used for all of them:

* ``idle``: server RSS with N subscribed idle clients minus RSS before they connected, / N;
* ``spread``: N clients over M channels, each channel 2 updates/s for ``--duration`` s from a
  publisher of its own that keeps an absolute schedule (a late publish is counted, not
  skipped): delivery latency percentiles, from the record's ``ts`` to receipt;
* ``lockstep``: N clients on one channel, one update in flight at a time (publish, wait until
  every client holds it, next): server CPU (utime + stime of every server process, from
  ``/proc/<pid>/stat``) per delivery, and the floors' in the same run.

``Server`` is what a scenario needs of a target; ``plan`` runs them and makes the rows.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.gateway.centrifugo_frames import peer_channel
from bench.gateway.phases import pcts, show
from bench.gateway.rig import Rig, latencies, total
from bench.gateway.writer import now_ts
from bench.log import percentile
from schemas.view import make_update

SCENARIOS = ("idle", "spread", "lockstep")  # the order they run in: idle's clients stay for spread
DEFAULT_CONNECTIONS = {"idle": 19_800, "spread": 19_800, "lockstep": 10_000}
LATE = 0.010  # a publish that starts over 10 ms after its deadline is late
Rows = list[tuple[str, str]]


class Server(Protocol):
    name: str
    protocol: str   # the load clients' protocol for it: "stumpcast" or "centrifugo"
    path: bytes     # the WebSocket path
    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pids(self) -> list[int]: ...
    def check(self, phase: str) -> None: ...
    async def publish(self, match: str) -> None: ...


class GatewayServer:
    """Our gateway (``mode`` "hub") or a floor ("floor", "syscall"), in ``workers`` processes, fed
    through the private Redis as every gateway phase is (``Rig.publish_round``)."""

    protocol, path = "stumpcast", b"/ws"

    def __init__(self, rig: Rig, mode: str, workers: int) -> None:
        self.rig, self.mode, self.workers = rig, mode, workers
        what = "gateway" if mode == "hub" else FLOORS[mode].removeprefix("the ")
        self.name = f"{what} ×{workers}"
        self.port = rig.args.port

    def start(self) -> None:
        self.rig.start_gateway(self.mode, self.workers)

    def stop(self) -> None:
        self.rig.stop_gateway()

    def pids(self) -> list[int]:
        return self.rig.server_pids()

    def check(self, phase: str) -> None:
        self.rig.assert_alive(phase)

    async def publish(self, match: str) -> None:
        await self.rig.publish_round([match])


class PeerServer:
    """Centrifugo (``bench/gateway/peer.py``), fed through its server API with the same update
    records the gateway sends: each match's records chain (``prev_seq``) from the first card,
    so the clients check continuity as they do against the gateway."""

    protocol = "centrifugo"

    def __init__(self, peer: Any, port: int, cards: list[dict[str, Any]]) -> None:
        self.peer, self.port, self.cards = peer, port, cards
        self.name = "centrifugo"
        self.path = peer.ws_path.encode()
        self.state: dict[str, tuple[int, Any]] = {}  # match -> (seq, card) last published

    def start(self) -> None:
        self.peer.start()

    def stop(self) -> None:
        self.peer.stop()

    def pids(self) -> list[int]:
        return [int(self.peer.pid)]

    def check(self, phase: str) -> None:
        if not Path(f"/proc/{self.peer.pid}").exists():
            raise RuntimeError(f"{self.name} (pid {self.peer.pid}) exited during {phase}")

    def record(self, match: str) -> bytes:
        """The match's next update record; its ``ts`` is now, just before it is published."""
        seq, prev = self.state.get(match, (0, self.cards[0]))
        card = self.cards[(seq + 1) % len(self.cards)]
        update = make_update(match, 1, seq + 1, seq, now_ts(), prev, card)
        self.state[match] = (seq + 1, card)
        return update.encode()

    async def publish(self, match: str) -> None:
        await self.peer.apublish(peer_channel(match), self.record(match))


def make_peer(kind: str, work_dir: Path, port: int, cards: list[dict[str, Any]]) -> PeerServer:
    """The peer named by ``--peer`` (imported here: part of the bench only in peer mode)."""
    if kind != "centrifugo":
        raise ValueError(f"unknown peer {kind!r} (known: centrifugo)")
    from bench.gateway.peer import Centrifugo

    return PeerServer(Centrifugo(work_dir, port, say=print), port, cards)


# -- /proc arithmetic -------------------------------------------------------------------------

def stat_ticks(stat: str) -> int:
    """utime + stime (clock ticks, every thread of the process) from a ``/proc/<pid>/stat``
    line. The command name may hold spaces and parentheses: fields count from the last ``)``."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_sample(pids: Iterable[int], read: Callable[[int], str] | None = None) -> dict[int, int]:
    read = read or (lambda pid: Path(f"/proc/{pid}/stat").read_text())
    return {pid: stat_ticks(read(pid)) for pid in pids}


def cpu_per_delivery_us(before: dict[int, int], after: dict[int, int], deliveries: int,
                        hz: int | None = None) -> float:
    """Server CPU per delivery in µs between two samples of the same processes."""
    gone = sorted(set(before) - set(after))
    if gone:
        raise ValueError(f"server processes {gone} were not sampled at the end")
    if deliveries <= 0:
        raise ValueError("no deliveries: CPU per delivery is undefined")
    hz = hz or os.sysconf("SC_CLK_TCK")
    ticks = sum(after[p] - before[p] for p in before)
    return ticks / hz / deliveries * 1e6


def rss_bytes(pids: Iterable[int]) -> int:
    out = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out += int(line.split()[1]) * 1024
    return out


# -- the scenarios ----------------------------------------------------------------------------

@dataclass
class Figures:
    """What one target gave, for the rows and the ratios."""

    rss_per_conn: float | None = None     # bytes
    p99: float | None = None              # ms
    cpu_us: float | None = None           # µs per delivery
    rows: Rows = field(default_factory=list)


def aim(rig: Rig, server: Server) -> None:
    rig.call_all("target", {"port": server.port, "protocol": server.protocol,
                            "path": server.path})


def connect(rig: Rig, server: Server, channels: list[str], n: int) -> Rows:
    aim(rig, server)
    took, ready = rig.connect_ready(channels, n)
    if ready < n:
        errors = rig.call_all("report", {})
        why = "; ".join({r["last_error"] for r in errors if r["last_error"]}) or "no error reply"
        raise RuntimeError(f"{server.name}: {ready} of {n} clients subscribed after "
                           f"{took:.0f} s ({why})")
    return [(f"{server.name}: clients subscribed", f"{n} over {plural(len(channels), 'channel')} "
             f"in {took:.1f} s")]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else ('es' if word.endswith('s') else 's')}"


def drop_clients(rig: Rig) -> None:
    rig.call_all("abort", None)
    time.sleep(1.0)  # the server closes them before the next figure


def idle(rig: Rig, server: Server, channels: list[str], n: int, fig: Figures) -> Rows:
    time.sleep(1.0)
    before = rss_bytes(server.pids())
    rows = connect(rig, server, channels, n)
    time.sleep(2.0)  # pings and subscription bookkeeping settle
    after = rss_bytes(server.pids())
    fig.rss_per_conn = (after - before) / n
    return rows + [(f"idle: RSS per subscribed idle connection, {server.name}",
                    f"{fig.rss_per_conn / 1024:.1f} KiB ({n} connections, server RSS "
                    f"{before / 2**20:.0f} → {after / 2**20:.0f} MiB; target ≤ 8 KiB)")]


async def publisher(server: Server, match: str, first: float, period: float, count: int,
                    late: list[float]) -> None:
    """``count`` publishes at ``first + k * period`` (monotonic clock). A publish that cannot
    start on time starts as soon as it can and is counted in ``late``; none is skipped."""
    for k in range(count):
        deadline = first + k * period
        ahead = deadline - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        behind = time.monotonic() - deadline
        if behind > LATE:
            late.append(behind)
        await server.publish(match)


async def schedule(server: Server, channels: list[str], rate: float, seconds: float,
                   late: list[float]) -> int:
    """One publisher per channel, out of step (channel j starts j / (rate M) s later);
    returns the updates per channel."""
    count, period = max(1, round(seconds * rate)), 1.0 / rate
    start = time.monotonic() + 0.05
    await asyncio.gather(*(publisher(server, m, start + j * period / len(channels), period,
                                     count, late) for j, m in enumerate(channels)))
    return count


async def spread(rig: Rig, server: Server, channels: list[str], n: int, seconds: float,
                 fig: Figures) -> Rows:
    rate = 2.0
    await schedule(server, channels, rate, 2.0, [])  # warm-up: every client has a position
    await asyncio.sleep(1.0)
    rig.call_all("measure", True)
    late: list[float] = []
    count = await schedule(server, channels, rate, seconds, late)
    await asyncio.sleep(1.5)
    reps = rig.reports()
    lat = latencies(reps)
    fig.p99 = percentile(lat, 99) if lat else None
    worst = f", worst {max(late) * 1000:.0f} ms behind" if late else ""
    return [(f"spread: delivery latency, {server.name}",
             pcts(lat) + (" (target p99 ≤ 50 ms)" if server.protocol == "stumpcast" else "")),
            (f"spread: updates received / expected / gaps, {server.name}",
             f"{total(reps, 'updates')} / {count * n} / {total(reps, 'gaps')}; "
             f"{len(late)} of {count * len(channels)} publishes late{worst}")]


async def lockstep(rig: Rig, server: Server, channel: str, n: int, updates: int,
                   fig: Figures) -> Rows:
    rig.call_all("measure", False)  # counts from 0, not measured
    for k in (1, 2):  # warm-up: every client holds a position, no fanout still running after
        await server.publish(channel)
        if not wait_progress(rig, k * n, 30.0):
            raise RuntimeError(f"lockstep, {server.name}: a warm-up update did not reach all "
                               f"{n} clients within 30 s")
    rig.call_all("measure", True)
    pids = server.pids()
    before, t0 = cpu_sample(pids), time.monotonic()
    for k in range(1, updates + 1):
        await server.publish(channel)
        if not wait_progress(rig, k * n, 30.0):
            raise RuntimeError(f"lockstep, {server.name}: update {k} did not reach all "
                               f"{n} clients within 30 s")
    after, took = cpu_sample(pids), time.monotonic() - t0
    reps = rig.reports()
    deliveries = total(reps, "updates")
    fig.cpu_us = cpu_per_delivery_us(before, after, deliveries)
    ticks = sum(after[p] - before[p] for p in before)  # the resolution: 1 tick = 1/CLK_TCK s
    return [(f"lockstep: server CPU per delivery, {server.name}",
             f"{fig.cpu_us:.1f} µs ({deliveries} deliveries: {updates} updates to {n} clients "
             f"in {took:.1f} s; {ticks} ticks of {os.sysconf('SC_CLK_TCK')} Hz over "
             f"{plural(len(pids), 'process')}; gaps {total(reps, 'gaps')})")]


def wait_progress(rig: Rig, expected: int, timeout: float) -> bool:
    """Until the clients hold ``expected`` updates since ``measure``: polled every 20 ms, so
    lockstep's next publish follows the last delivery closely."""
    return rig.wait_covered(expected, timeout, poll=0.02)


# -- the plan: targets, scenarios, ratios -----------------------------------------------------

@dataclass
class Plan:
    scenarios: list[str]
    workers: list[int]
    peer: str | None = None
    connections: int | None = None   # else each scenario's default (DEFAULT_CONNECTIONS)
    seconds: float = 30.0            # spread's measured window
    lockstep_updates: int = 20

    def conns(self, scenario: str) -> int:
        return self.connections or DEFAULT_CONNECTIONS[scenario]


async def run_target(rig: Rig, server: Server, plan: Plan) -> Figures:
    """Every scenario of ``plan`` against ``server``, started here and stopped after."""
    fig, held = Figures(), None
    server.start()
    try:
        for name in (x for x in SCENARIOS if x in plan.scenarios):
            n = plan.conns(name)
            layout = (n, "lockstep") if name == "lockstep" else (n, "spread")
            if held is not None and (held != layout or name == "idle"):
                drop_clients(rig)
                held = None
            if name == "idle":
                rows = idle(rig, server, rig.matches, n, fig)
            else:
                rows = [] if held else connect(rig, server, channels_of(rig, name), n)
                if name == "spread":
                    rows += await spread(rig, server, rig.matches, n, plan.seconds, fig)
                else:
                    rows += await lockstep(rig, server, rig.hot, n, plan.lockstep_updates, fig)
            held = layout
            server.check(f"the {name} scenario")
            fig.rows += show(rows)
        drop_clients(rig)
    finally:
        server.stop()
    return fig


def channels_of(rig: Rig, scenario: str) -> list[str]:
    return [rig.hot] if scenario == "lockstep" else rig.matches


FLOORS = {"floor": "the Python floor", "syscall": "the syscall floor",
          "native": "the native floor"}  # baselines.BASELINES


async def run_plan(rig: Rig, plan: Plan, peer: PeerServer | None) -> tuple[Rows, str]:
    """The peer first (a build or start that fails, fails before the long part), then the
    gateway in each process count, each followed by its floors in as many processes when
    ``lockstep`` runs."""
    await rig.setup_redis()
    rig.start_clients()
    rows: Rows = []
    peer_fig = await run_target(rig, peer, plan) if peer is not None else None
    if peer_fig is not None:
        rows += peer_fig.rows
    for w in plan.workers:
        fig = await run_target(rig, GatewayServer(rig, "hub", w), plan)
        rows += fig.rows
        floors: dict[str, Figures] = {}
        if "lockstep" in plan.scenarios:
            for mode in FLOORS:
                floors[mode] = await run_target(
                    rig, GatewayServer(rig, mode, w),
                    Plan(["lockstep"], [w], None, plan.connections, plan.seconds,
                         plan.lockstep_updates))
                rows += floors[mode].rows
        rows += show(ratio_rows(f"gateway ×{w}", fig, floors, peer_fig))
    return rows, notes(rig, plan)


def ratio_rows(name: str, fig: Figures, floors: dict[str, Figures],
               peer: Figures | None) -> Rows:
    rows: Rows = []
    for mode, floor in floors.items():
        if fig.cpu_us and floor.cpu_us:
            rows.append((f"lockstep: CPU per delivery, {name} / {FLOORS[mode]}",
                         f"{fig.cpu_us / floor.cpu_us:.2f}× ({fig.cpu_us:.1f} against "
                         f"{floor.cpu_us:.1f} µs)"))
    if peer is None:
        return rows
    if fig.cpu_us and peer.cpu_us:
        rows.append((f"lockstep: CPU per delivery, {name} / centrifugo",
                     f"{fig.cpu_us / peer.cpu_us:.2f}× (target ≤ 0.5×)"))
    if fig.p99 and peer.p99:
        rows.append((f"spread: p99 delivery latency, {name} / centrifugo",
                     f"{fig.p99 / peer.p99:.2f}× ({fig.p99:.1f} against {peer.p99:.1f} ms; "
                     "target ≤ 1×)"))
    if fig.rss_per_conn and peer.rss_per_conn:
        rows.append((f"idle: RSS per connection, {name} / centrifugo",
                     f"{fig.rss_per_conn / peer.rss_per_conn:.2f}×"))
    return rows


def notes(rig: Rig, plan: Plan) -> str:
    args = rig.args
    compete = ("at normal priority (`--compete`)" if getattr(args, "compete", False)
               else "under SCHED_BATCH (`--no-compete`)")
    return (f"Scenarios {', '.join(x for x in SCENARIOS if x in plan.scenarios)} against the "
            f"gateway in {', '.join(map(str, plan.workers))} processes"
            + (f" and {plan.peer}" if plan.peer else "") +
            f"; load clients in {args.client_procs} processes {compete}; idle and spread over "
            f"{len(rig.matches)} channels, lockstep on one ({plan.lockstep_updates} updates); "
            f"spread {plan.seconds:.0f} s at 2 updates/s per channel, one publisher per "
            "channel on an absolute schedule. Update records of Cricsheet 1370353 (the 2023 IPL "
            "final) folded by streams; latency: the record's `ts` (set just before the Redis "
            "commit, or the peer's publish API call) → client receipt, same clock. CPU: utime + "
            "stime of every server process from /proc/<pid>/stat. Loopback, 2 shared cores.")
