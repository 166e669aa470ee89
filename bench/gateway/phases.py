"""The phases of `stumpcast bench gateway`, each returning figures as (name, value) rows."""

from __future__ import annotations

import asyncio
import time

from bench.gateway.rig import (
    DRIVER_COMMANDS,
    PER_CLIENT_READS,
    Rig,
    last_client,
    latencies,
    total,
)
from bench.log import median, percentile
from runtime.eventloop import watch_lag

Rows = list[tuple[str, str]]


def show(rows: Rows, rig: Rig | None = None) -> Rows:
    """Print figures as they come, so a long run that fails later still says something; with
    ``rig``, first check that every gateway worker survived the phase."""
    if rig is not None:
        rig.assert_alive(rows[0][0] if rows else "a phase")
    for name, value in rows:
        print(f"  {name:60s} {value}", flush=True)
    return rows


def pcts(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 50):.1f} · p99 {percentile(values, 99):.1f} · "
            f"p99.9 {percentile(values, 99.9):.1f} ms (n={len(values)})")


async def run_all(rig: Rig) -> tuple[Rows, str]:
    args, rows = rig.args, []
    skip = set(filter(None, args.skip.split(",")))
    lag_log = watch_lag(rig.settings.lag_log_dir, "driver")
    lag = asyncio.get_running_loop().create_task(lag_log)  # noqa: F841
    await rig.setup_redis()
    rig.start_clients()
    rig.start_gateway("hub")
    rows += show(connect_and_measure_memory(rig), rig)
    rows += show(await latency_phase(rig), rig)
    if "throughput" not in skip:
        hub_rate, more = await burst_phase(rig, "hub")
        rows += show(more, rig)
    if "hot" not in skip:
        hub_last = await hot_phase(rig, "hub")
        rig.assert_alive("the hot phase")
    if "storm" not in skip:  # on the hot match when it ran: all clients resume one match
        rows += show(await storm_phase(rig), rig)
    rows += show([("connections aborted for unanswered pings (hub run, should be 0)",
                   f"{rig.stat_sum('pong_timeouts'):.0f}")])
    if "hot" not in skip:
        rig.stop_gateway()
        rig.start_gateway("floor")
        rig.connect([rig.hot])
        floor_last = await hot_phase(rig, "floor")
        rows += show([("hot match, last client: hub (median per update)", pcts(hub_last)),
                 ("hot match, last client: floor (median per update)", pcts(floor_last)),
                 ("hot match ratio hub/floor, median of last-client latency",
                  f"{median(hub_last) / median(floor_last):.2f}× (target ≤ 1.5×)")])
    if "baseline" not in skip and "throughput" not in skip:
        rig.stop_gateway()
        rig.start_gateway("syscall")
        rig.connect(rig.matches)
        base_rate, more = await burst_phase(rig, "syscall floor")
        rows += more + [("deliveries/s hub / the syscall floor", f"{hub_rate / base_rate:.2f}× "
                         "(the floor: one os.write per socket, no queues)")]
    rig.stop_gateway()
    notes = (f"{args.connections} clients in {args.client_procs} load processes, gateway "
             f"{args.workers} workers, {args.matches} matches, cards of Cricsheet 1370353 (the "
             "2023 IPL final) folded by streams. Latency: driver `ts` just before the Redis "
             "commit → client receipt, same clock. Loopback, 2 shared cores: clients, Redis and "
             "driver compete with the gateway for CPU.")
    return rows, notes


def connect_and_measure_memory(rig: Rig) -> Rows:
    before = rig.rss_bytes()
    took = rig.connect(rig.matches)
    time.sleep(1.0)
    after = rig.rss_bytes()
    n = rig.args.connections
    held = int(rig.stat_sum("connections"))
    return [("connections held", f"{held} of {n} (connected in {took:.1f} s)"),
            ("gateway RSS per connection (subscribed, idle)",
             f"{(after - before) / max(held, 1) / 1024:.1f} KiB (target ≤ 15 KB)"),
            ("gateway RSS total", f"{after / 2**20:.0f} MiB over {rig.args.workers} workers")]


async def latency_phase(rig: Rig) -> Rows:
    """Each match 2 updates/s on a fixed schedule, matches out of step; warm-up excluded.
    Measured in ``--windows`` windows one after another: the machine is shared, so one window's
    p99 is partly luck; the median of the windows' p99 is the figure."""
    warm, rounds, windows = 4, rig.args.updates, max(1, rig.args.windows)
    await _staggered(rig, warm)
    await asyncio.sleep(1.0)
    label = f"delivery latency, {len(rig.matches)} matches, 2 updates/s each, staggered"
    rows: Rows = []
    p99s, pooled = [], []
    for w in range(1, windows + 1):
        rig.call_all("measure", True)  # resets the clients' samples
        took = await _staggered(rig, rounds)
        await asyncio.sleep(1.5)
        reps = rig.reports()
        lat = latencies(reps)
        p99s.append(percentile(lat, 99))
        pooled += lat
        expected = rounds * rig.args.connections
        rows += [(f"{label}, window {w}", pcts(lat)),
                 (f"  window {w}: updates received / expected / gaps",
                  f"{total(reps, 'updates')} / {expected} / {total(reps, 'gaps')} over "
                  f"{took:.0f} s")]
    rows += [(f"{label}, all {windows} windows", pcts(pooled)),
             ("delivery latency p99, median of the windows",
              f"{median(p99s):.1f} ms (windows: {', '.join(f'{x:.1f}' for x in p99s)}; "
              "target ≤ 50 ms)")]
    return rows


async def _staggered(rig: Rig, rounds: int) -> float:
    """``rounds`` updates per match at 2/s; match j publishes at k/2 + j/(2M) s (absolute
    times, so a slow publish does not stretch the schedule)."""
    start, m = time.monotonic(), len(rig.matches)
    for k in range(rounds):
        for j, match in enumerate(rig.matches):
            ahead = start + k * 0.5 + j * 0.5 / m - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await rig.publish_round([match])
    return time.monotonic() - start


async def burst_phase(rig: Rig, mode: str) -> tuple[float, Rows]:
    """Every match publishes ``rounds`` updates back to back; the rate is over the completed
    work: from the first publish until the last client holds the last update."""
    rounds = 30
    rig.call_all("measure", True)
    await asyncio.sleep(0.5)
    cpu0, t0 = rig.cpu_seconds(), time.time()
    await rig.drive(rig.matches, rounds, rate=None)
    expected = rounds * rig.args.connections
    done = await asyncio.get_running_loop().run_in_executor(
        None, rig.wait_covered, expected, 120.0)
    cpu = rig.cpu_seconds() - cpu0
    reps = rig.reports()
    end = max(r["last_rx"] for r in reps)
    elapsed = end - t0
    frames, covered = total(reps, "frames"), total(reps, "covered")
    rate = covered / elapsed
    state = "completed" if done else f"NOT completed within 120 s ({covered} of {expected})"
    return rate, [(f"burst {mode}: updates delivered/s (frames/s)",
                   f"{rate:,.0f} ({frames / elapsed:,.0f}) over {covered:,} updates in "
                   f"{elapsed:.2f} s, {state}"),
                  (f"burst {mode}: gateway CPU", f"{cpu:.2f} s = {cpu / elapsed:.2f} cores"),
                  (f"burst {mode}: latency", pcts(latencies(reps)))]


async def storm_phase(rig: Rig) -> Rows:
    rig.call_all("measure", False)
    calls0, stats0 = await rig.redis_calls(), _cache_stats(rig)
    live = [m for m, n in rig.live.items() if n] or rig.matches
    driver = asyncio.create_task(rig.drive(live, 16, rate=2.0))
    await asyncio.get_running_loop().run_in_executor(None, rig.call_all, "storm", 5.0)
    await driver
    took = await asyncio.get_running_loop().run_in_executor(None, _until_settled, rig, 60.0)
    calls1 = await rig.redis_calls()
    delta = {k: v - calls0.get(k, 0) for k, v in calls1.items()}
    gateway_calls = sum(v for k, v in delta.items() if k not in DRIVER_COMMANDS)
    reads = sum(delta.get(k, 0) for k in PER_CLIENT_READS)
    stats = {k: v - stats0[k] for k, v in _cache_stats(rig).items()}
    reps = rig.reports()
    lost = total(reps, "gaps")
    asked = total(reps, "recovered") + total(reps, "not_recovered")
    return [("storm: clients dropped and resumed within 5 s",
             f"{total(reps, 'recovered')} recovered, {total(reps, 'not_recovered')} snapshots, "
             f"{total(reps, 'retries')} connect retries (503 or refused)"),
            ("storm: updates lost (gaps seen by clients)", f"{lost} (target 0)"),
            ("storm: clients open / not at the final position after",
             f"{total(reps, 'open')} / {total(reps, 'behind')} ({took})"),
            ("storm: answered from the gateway's cache (Redis view/notes reads per resume)",
             f"{1 - reads / max(asked, 1):.2%} of {asked} resumes; {reads} GET/XRANGE/"
             "XREVRANGE on the private Redis (target ≥ 99%)"),
            ("storm: gateway's own count", f"{stats['cache_answers']:.0f} cache answers, "
             f"{stats['redis_loads'] + stats['redis_answers']:.0f} Redis loads"),
            ("storm: Redis commands by the gateway", f"{gateway_calls} over the storm "
             f"(private Redis, INFO commandstats minus the driver's commands: "
             f"{_top(delta)})")]


def _until_settled(rig: Rig, timeout: float) -> str:
    """Wait (after the last storm update) until every client is open and at the final
    position, up to ``timeout``; say how long it took."""
    start, n = time.monotonic(), rig.args.connections
    finals = {m: st.seq for m, st in rig.writer.state.items()}
    while time.monotonic() - start < timeout:
        if sum(rig.call_all("settled", finals)) >= n:
            return f"all settled {time.monotonic() - start:.1f} s after the last update"
        time.sleep(0.5)
    return f"NOT all settled {timeout:.0f} s after the last update"


def _top(delta: dict[str, int]) -> str:
    mine = sorted(((v, k) for k, v in delta.items() if k not in DRIVER_COMMANDS and v),
                  reverse=True)
    return ", ".join(f"{k} {v}" for v, k in mine[:5]) or "none"


def _cache_stats(rig: Rig) -> dict[str, float]:
    return {k: rig.stat_sum(k) for k in ("cache_answers", "redis_loads", "redis_answers")}


async def hot_phase(rig: Rig, mode: str) -> list[float]:
    rig.live = {rig.hot: 1}
    if mode == "hub":
        rig.call_all("switch", rig.hot)
    deadline = time.monotonic() + 30
    while rig.stat_sum("subscriptions") > rig.args.connections + 10 and \
            time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await rig.drive([rig.hot], 2, rate=1.0)  # warm-up, not measured
    await asyncio.sleep(1.0)
    rig.call_all("measure", True)
    await rig.drive([rig.hot], rig.args.updates // 2, rate=1.0)
    await asyncio.sleep(2.0)
    return last_client(rig.reports())
