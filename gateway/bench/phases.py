"""The phases of `stumpcast bench gateway`, each returning figures as (name, value) rows."""

from __future__ import annotations

import asyncio
import time

from gateway.bench.run import Rig, last_client, latencies, total
from stumpcast.benchlog import median, percentile

Rows = list[tuple[str, str]]


def show(rows: Rows) -> Rows:
    """Print figures as they come, so a long run that fails later still says something."""
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
    await rig.setup_redis()
    rig.start_clients()
    rig.start_gateway("hub")
    rows += show(connect_and_measure_memory(rig))
    rows += show(await latency_phase(rig))
    if "throughput" not in skip:
        hub_rate, more = await burst_phase(rig, "hub")
        rows += show(more)
    if "hot" not in skip:
        hub_last = await hot_phase(rig, "hub")
    if "storm" not in skip:  # on the hot match when it ran: all clients resume one match
        rows += show(await storm_phase(rig))
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
        rig.start_gateway("broadcast")
        rig.connect(rig.matches)
        base_rate, more = await burst_phase(rig, "broadcast")
        rows += more + [("deliveries/s hub / broadcast()", f"{hub_rate / base_rate:.2f}× "
                         "(target ≥ 2×)")]
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
    rig.call_all("measure", True)
    start = time.monotonic()
    for _ in range(rig.args.updates):  # each match 2 updates/s, matches out of step
        for m in rig.matches:
            await rig.drive([m], 1, rate=None)
            await asyncio.sleep(0.5 / len(rig.matches))
    took = time.monotonic() - start
    await asyncio.sleep(1.5)
    reps = rig.reports()
    return [(f"delivery latency, {len(rig.matches)} matches, ~2 updates/s each, staggered",
             pcts(latencies(reps))),
            ("  updates received / gaps", f"{total(reps, 'updates')} / {total(reps, 'gaps')}"
             f" over {took:.0f} s")]


async def burst_phase(rig: Rig, mode: str) -> tuple[float, Rows]:
    rig.call_all("measure", True)
    await asyncio.sleep(0.5)
    cpu0, t0 = rig.cpu_seconds(), time.time()
    await rig.drive(rig.matches, 30, rate=None)
    await asyncio.sleep(3.0)
    reps = rig.reports()
    end = max(r["last_rx"] for r in reps)
    elapsed, cpu = end - t0, rig.cpu_seconds() - cpu0
    frames, covered = total(reps, "frames"), total(reps, "covered")
    rate = covered / elapsed
    return rate, [(f"burst {mode}: updates delivered/s (frames/s)",
                   f"{rate:,.0f} ({frames / elapsed:,.0f}) in {elapsed:.2f} s"),
                  (f"burst {mode}: gateway CPU", f"{cpu:.2f} s = {cpu / elapsed:.2f} cores"),
                  (f"burst {mode}: latency", pcts(latencies(reps)))]


async def storm_phase(rig: Rig) -> Rows:
    rig.call_all("measure", False)
    calls0, stats0 = await rig.redis_calls(), _cache_stats(rig)
    commits0 = rig.commits
    live = [m for m, n in rig.live.items() if n] or rig.matches
    driver = asyncio.create_task(rig.drive(live, 16, rate=2.0))
    await asyncio.get_running_loop().run_in_executor(None, rig.call_all, "storm", 5.0)
    await driver
    await asyncio.sleep(3.0)
    calls = await rig.redis_calls() - calls0 - 2 * (rig.commits - commits0) - 1
    stats = {k: v - stats0[k] for k, v in _cache_stats(rig).items()}
    reps = rig.reports()
    lost = total(reps, "gaps")
    asked = stats["cache_answers"]
    from_redis = stats["redis_loads"] + stats["redis_answers"]
    return [("storm: clients dropped and resumed within 5 s",
             f"{total(reps, 'recovered')} recovered, {total(reps, 'not_recovered')} snapshots, "
             f"{total(reps, 'retries')} connect retries (503 or refused)"),
            ("storm: updates lost (gaps seen by clients)", f"{lost} (target 0)"),
            ("storm: clients open / not at the final position 3 s after",
             f"{total(reps, 'open')} / {total(reps, 'behind')}"),
            ("storm: answered from the gateway's cache",
             f"{1 - from_redis / max(asked, 1):.2%} of {asked} (target ≥ 99%)"),
            ("storm: Redis commands by the gateway", f"≈{calls} (INFO commandstats, minus "
             "the driver's)")]


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
    await asyncio.sleep(1.0)
    rig.call_all("measure", True)
    await rig.drive([rig.hot], rig.args.updates // 2, rate=1.0)
    await asyncio.sleep(2.0)
    return last_client(rig.reports())
