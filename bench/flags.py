"""`stumpcast bench flags`: a flag change to N connected clients, and the controller under load.

Reuses the gateway bench's rig (``bench.gateway.rig``): the real gateway (``stumpcast gateway
serve --workers W``) on a private Redis, load-generator processes (``loadclient``) whose
clients each subscribe to a match and to their flags (half "north", half "south"), and the
reference writer driving score updates. Flag changes go through ``runtime.flags`` like an
operator's: Kafka (acknowledged) first, then the private Redis.

1. Propagation: ``--changes`` flag changes (``markers`` off/on in the north); for each, the time
   from the start of the write to each client's receipt of the new version: p50/p99 over all
   clients and changes (target p99 <= 1 s), and how many clients got every version.
2. Overload: the degradation controller (``runtime.degrade``, in a thread, reading the workers'
   stats files and Redis; capped at ``--max-level``, 1 by default, so the P1 figure is level
   1's and not level 2's deliberate conflation) runs while score updates (P1) and "N watching"
   counters (P2) flow; then ``--flood`` P2 notifications a second (a synthetic overload: a
   storm of minor milestones, each fanned out to every subscriber of its match). Reported:
   time until level 1, P1 latency while at level >= 1 (target p99 <= 50 ms), P2 messages
   received while shed, and time back to level 0 once the flood stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import threading
import time
from array import array
from typing import Any

from bench.gateway.rig import Rig, free_port
from bench.log import median, percentile, record
from schemas.flags import LEVEL_FLAG, FlagChange, FlagState
from schemas.topology import RedisKeys

FLAG = "markers"


TRACE: list[Any] = []  # the controller loop, whose signals are kept (and, --trace, printed)
PRINT: list[bool] = [False]
Timeline = list[tuple[float, int, dict[str, float]]]  # (when, level, the controller's signals)


def pct(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def _rig_args(args: Any) -> argparse.Namespace:
    return argparse.Namespace(matches=args.matches, workers=args.workers, port=free_port(),
                              client_procs=args.procs, connections=args.clients)


def run_bench(args: Any, settings: Any) -> int:
    from bench.gateway.cards import match_cards
    from gateway.workers import raise_fd_limit

    raise_fd_limit()
    cards = match_cards(settings.cricsheet_dir / "1370353.json")
    rig = Rig(_rig_args(args), settings, cards)
    rows: list[tuple[str, str]] = []
    load_before = os.getloadavg()
    try:
        rig.start_redis()
        rows = asyncio.run(_main(rig, settings, args))
    finally:
        with contextlib.suppress(Exception):
            rig.stop_gateway()
        for proc in rig.procs:
            proc.kill()
        rig.stop_redis()
    # The machine is shared: its load says how much of the figures is the gateway's own.
    rows.append(("machine load average (1 min) at the start / the end",
                 f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"))
    for name, value in rows:
        print(f"{name}: {value}")
    if not args.no_record:
        record("bench flags", rows, notes=NOTES)
    return 0


NOTES = ("Flag changes are written as an operator's are (Kafka acks=all, then Redis); latency "
         "is from the start of that write to each client's receipt. The overload is a storm "
         "of P2 notifications (every client follows its match's notes); the controller "
         "samples once a second with the default thresholds (runtime/degrade.py), capped at "
         "level 1. The load processes (bench/gateway/loadclient.py) run on the same 2 cores "
         "as the gateway workers, Redis and this driver, under SCHED_BATCH (they do not "
         "preempt a running worker, but take their full share of CPU); their receive delays "
         "count against the gateway. Loop lag: the workers' worst 50 ms-sleep overshoot per "
         "second, which includes time the kernel gave to other processes.")


async def _main(rig: Rig, settings: Any, args: Any) -> list[tuple[str, str]]:
    """One event loop for the driver's Redis client; the blocking steps simply block it."""
    await rig.setup_redis()
    rig.start_gateway("hub")
    rig.start_clients()
    regions = ["north" if i % 2 == 0 else "south" for i in range(len(rig.pipes))]
    rig.call_all("region", None, regions)
    took = rig.connect(rig.matches)
    deadline = time.monotonic() + 60
    while rig.stat_sum("connections") < args.clients and time.monotonic() < deadline:
        time.sleep(0.2)  # connect() counts subscriptions, and each client has two
    took = max(took, 0.0)
    rows = [("clients connected (match + flags channels)",
             f"{int(rig.stat_sum('connections')):,} in {took:.1f} s, "
             f"{args.workers} gateway workers, {args.procs} load processes")]
    store = _store(settings, rig)
    try:
        rows += propagation(rig, store, args.changes)
        rows += rollout_share(rig, store, 25.0)
        rows += await overload(rig, store, args)
    finally:
        store.close()
        await rig.redis.aclose()
    return rows


def _store(settings: Any, rig: Rig) -> Any:
    from runtime import redisconn
    from runtime.flags import FlagStore

    store = FlagStore(settings, redisconn.connect(rig.redis_url, None))  # the rig's own Redis
    store.connect()
    for flag in (FLAG, LEVEL_FLAG, "sync_video"):  # the private Redis starts from defaults
        store.redis.hdel(RedisKeys.flags, flag)
    return store


def _times(rig: Rig, version: int) -> list[float]:
    out: list[float] = []
    for rep in rig.call_all("flags", version):
        out += array("d", rep["times"]).tolist()
    return out


def rollout_share(rig: Rig, store: Any, percent: float) -> list[tuple[str, str]]:
    """A sticky rollout through the real gateway: the share of connected sessions told yes."""
    n = int(rig.stat_sum("connections"))
    written = store.write(FlagChange("sync_video", FlagState(rollout=percent), "bench",
                                     int(time.time() * 1000), f"bench flags: {percent:g}% rollout"))
    deadline = time.monotonic() + 10
    got, on = 0, 0
    while time.monotonic() < deadline and got < n:
        time.sleep(0.2)
        replies = rig.call_all("flags", written.version)
        got = sum(len(array("d", r["times"])) for r in replies)
        on = sum(r["on"] for r in replies)
    share = 100 * on / max(got, 1)
    store.write(FlagChange("sync_video", FlagState(), "bench", int(time.time() * 1000),
                           "bench flags: rollout done"))
    return [(f"rollout {percent:g}% of sessions, through the gateway",
             f"{share:.2f}% of {got:,} connected sessions told yes "
             f"({'within' if abs(share - percent) <= 2 else 'OUTSIDE'} ±2 points)")]


def propagation(rig: Rig, store: Any, changes: int) -> list[tuple[str, str]]:
    n = int(rig.stat_sum("connections"))
    lat: list[float] = []
    per_change, complete = [], 0
    for i in range(changes):
        state = FlagState(True, {"north": i % 2 == 1})
        start = time.time()
        written = store.write(FlagChange(FLAG, state, "bench", int(start * 1000),
                                         f"bench flags: change {i + 1}"))
        deadline = time.monotonic() + 10
        got: list[float] = []
        while time.monotonic() < deadline:
            got = _times(rig, written.version)
            if len(got) >= n:
                break
            time.sleep(0.1)
        complete += len(got) >= n
        ms = sorted((t - start) * 1000 for t in got)
        lat += ms
        per_change.append(pct(ms, 99) if ms else float("nan"))
        time.sleep(0.5)
    lat.sort()
    return [
        (f"flag change to {n:,} clients, {changes} changes",
         f"p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms, max {lat[-1]:.0f} ms "
         f"(target p99 ≤ 1,000 ms); per-change p99 median {median(per_change):.0f} ms"),
        ("clients that got every change", f"{complete} of {changes} changes reached all {n:,}"),
    ]


async def overload(rig: Rig, store: Any, args: Any) -> list[tuple[str, str]]:
    from runtime.degrade import Controller, ControllerLoop, gateway_signals, redis_ms

    core = Controller(down_seconds=args.down_seconds, max_level=args.max_level)
    loop = ControllerLoop(lambda: {**gateway_signals(rig.stats_dir, time.time()),
                                   "redis_ms": redis_ms(store.redis)},
                          store, core, who="bench-controller")
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop.is_set,), daemon=True)
    thread.start()
    timeline: Timeline = []
    try:
        rows = await _overload_phases(rig, store, args, timeline, loop)
        shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(loop.last.items()))
        return [*rows, ("the controller's signals at the end", shown)]
    finally:
        stop.set()
        thread.join(5)


async def _drive(rig: Rig, seconds: float, timeline: Timeline, store: Any,
                 flood: float = 0.0) -> None:
    """Each match: a score update (P1) once a second, staggered over the second as matches
    are, and a "watching" counter (P2) that changes every second; with ``flood``, also that
    many P2 notifications a second over all matches (the synthetic overload)."""
    end = time.monotonic() + seconds
    gap = 1.0 / len(rig.matches)
    per_match = round(flood / len(rig.matches))
    while time.monotonic() < end:
        start = time.monotonic()
        for i, m in enumerate(rig.matches):
            await rig.publish_round([m])
            async with rig.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(RedisKeys.watching(m), {"u": b'{"type":"watching","v":1,'
                          b'"match_id":"' + m.encode() + b'","concurrent":'
                          + str(int(start)).encode() + b"}"}, maxlen=10)
                seq = rig.cursor.setdefault(f"notes:{m}", 0) + 1
                rig.cursor[f"notes:{m}"] = seq
                for k in range(per_match):
                    pipe.xadd(RedisKeys.notifications(m), {"u": P2_NOTE}, id=f"{seq}-{k}",
                              maxlen=1000)
                await pipe.execute()
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))
        signals = dict(TRACE[0].last) if TRACE else {}
        stats = rig.worker_stats()
        signals["delivery_worst_ms"] = max((float(s.get("delivery_worst_ms", 0.0))
                                            for s in stats), default=0.0)
        signals["cpu_wait"] = max((float(s.get("cpu_wait", 0.0)) for s in stats), default=0.0)
        signals["p2_sent"] = sum(float(s.get("p2_sent", 0.0)) for s in stats)
        timeline.append((time.monotonic(), _level(store), signals))
        if PRINT[0]:
            print("signals", timeline[-1][1], {k: round(v, 3) for k, v in signals.items()})


P2_NOTE = (b'{"type":"notification","v":1,"id":"bench","kind":"boundary","priority":"P2",'
           b'"text":"FOUR (bench flood)"}')


def _level(store: Any) -> int:
    state = store.current().get(LEVEL_FLAG)
    return (state[1].value or 0) if state else 0


def _p1_and_p2(rig: Rig) -> tuple[list[float], int]:
    lat: list[float] = []
    p2 = 0
    for rep in rig.call_all("flags", -1):
        lat += array("f", rep["latency"]).tolist()
        p2 += rep["p2"]
    return sorted(lat), p2


async def _overload_phases(rig: Rig, store: Any, args: Any, timeline: Timeline,
                           loop: Any) -> list[tuple[str, str]]:
    TRACE[:] = [loop]
    PRINT[0] = bool(args.trace)
    settle = time.monotonic()  # a noisy neighbour may have raised the level: start from 0
    while _level(store) != 0 and time.monotonic() - settle < 60:
        await _drive(rig, 1, timeline, store)
    rig.call_all("measure", True)
    calm_from = len(timeline)
    await _drive(rig, 6, timeline, store)
    calm_lat, calm_p2 = _p1_and_p2(rig)
    calm = timeline[calm_from:]
    entered = await _until(rig, timeline, store, args.flood, 30, lambda lv: lv >= 1)
    rig.call_all("measure", True)  # P1 and P2 from here: while shed
    shed_from = len(timeline)
    await _drive(rig, args.hold, timeline, store, args.flood)
    shed_lat, shed_p2 = _p1_and_p2(rig)
    # The stats files are rewritten every 0.5 s, so the count starts a second into the window
    # (a file read at its start may predate the level change).
    shed_sent = int(timeline[-1][2]["p2_sent"] - timeline[shed_from][2]["p2_sent"])
    shed = timeline[shed_from:]
    shed_level = _level(store)
    back = await _until(rig, timeline, store, 0.0, 60, lambda lv: lv == 0)
    levels = " ".join(str(lv) for _, lv, _ in timeline)
    return [
        (f"P1 (score update) latency before the overload (level {_levels(calm)})",
         f"p50 {pct(calm_lat, 50):.1f} ms, p99 {pct(calm_lat, 99):.1f} ms "
         f"({len(calm_lat):,} deliveries); P2 messages {calm_p2:,}"),
        (f"synthetic overload: {args.flood:,.0f} P2 notifications/s to every subscriber",
         f"level 1 entered after {entered:.1f} s (target ≤ 10 s)" if entered is not None
         else "level 1 NOT entered within 30 s"),
        (f"P1 latency while shed (level {shed_level}, {args.hold:g} s)",
         f"p50 {pct(shed_lat, 50):.1f} ms, p99 {pct(shed_lat, 99):.1f} ms (target ≤ 50 ms; "
         f"{len(shed_lat):,} deliveries)"),
        *_shed_rows(calm, shed, (calm_p2, shed_p2, shed_sent)),
        ("back to level 0 after the flood stopped",
         f"{back:.1f} s" if back is not None else "NOT within 60 s"),
        ("level each second", levels),
    ]


async def _until(rig: Rig, timeline: Timeline, store: Any, flood: float, limit: float,
                 reached: Any) -> float | None:
    """Drive second by second until the level satisfies ``reached``: how long that took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        await _drive(rig, 1, timeline, store, flood)
        if reached(_level(store)):
            return time.monotonic() - start
    return None


def _shed_rows(calm: Timeline, shed: Timeline, p2: tuple[int, int, int]
               ) -> list[tuple[str, str]]:
    calm_p2, shed_p2, shed_sent = p2
    return [
        ("gateway workers while measured, before / while shed: loop lag p50 and max (ms), "
         "CPU share of a core p50, share of the time runnable but waiting for a CPU p50 "
         "(worst worker); their own delivery time (commit to written on every socket), worst "
         "per second, p50 and max (ms)",
         f"{_gateway(calm)} / {_gateway(shed)}"),
        ("P2 messages received while shed", f"{shed_p2:,} (before: {calm_p2:,} in 6 s); "
         f"sent by the gateway from 1 s into that window to its end: {shed_sent:,}"
         + ("; the rest were sent before it and read late by the load processes"
            if shed_p2 > shed_sent else "")),
    ]


def _levels(part: Timeline) -> str:
    return "/".join(sorted({str(lv) for _, lv, _ in part})) or "?"


def _gateway(part: Timeline) -> str:
    """The workers' own view over a phase (the controller's samples of their stats files)."""
    lag = [x["loop_lag_ms"] for _, _, x in part if "loop_lag_ms" in x]
    cpu = [x["cpu"] for _, _, x in part if "cpu" in x]
    own = [x.get("delivery_worst_ms", 0.0) for _, _, x in part]
    wait = [x.get("cpu_wait", 0.0) for _, _, x in part]
    if not lag:
        return "n/a"
    return (f"{median(lag):.0f}, {max(lag):.0f}, {median(cpu):.2f}, {median(wait):.2f}; "
            f"{median(own):.0f}, {max(own):.0f}")
