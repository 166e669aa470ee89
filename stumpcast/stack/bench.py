"""`stumpcast bench stack`: how long `stack up` takes to healthy, and what the servers weigh.

Runs a second stack in a temporary run folder on free ports, so the shared stack keeps
running: cold (empty jar cache and empty Maven repository, so it downloads from Central),
warm (jars cached, fresh data) and restart (jars and data present). RSS is read from /proc
after the servers have idled for a while, since JVMs keep growing for a few seconds after start.

``--nodes 3`` measures the multi-node stack the same way (warm and restart: the jars are the
single node's), so the two topologies' figures sit side by side in BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.log import record as record_bench
from schemas.settings import Settings
from stumpcast.stack import control
from stumpcast.stack.procs import rss_bytes
from stumpcast.stack.provision import init_cassandra, init_kafka

Say = Callable[[str], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_block(size: int) -> int:
    """A first port with ``size`` free ports from it (the Redis Cluster's nodes and buses)."""
    from stumpcast.stack.ports import is_free

    for _ in range(50):
        base = _free_port()
        if base + size < 65536 and all(is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports found")


def bench_settings(settings: Settings, run_dir: Path, cache_dir: Path,
                   nodes: int = 1) -> Settings:
    """The user's settings (heaps, versions, java) on a private run folder and free ports."""
    moved = dataclasses.replace(
        settings, run_dir=run_dir, cache_dir=cache_dir, secrets_dir=run_dir / "secrets",
        scorer_registry=run_dir / "secrets" / "scorers.json",
        stack_kafka_port=_free_port(), stack_kafka_controller_port=_free_port(),
        stack_cassandra_port=_free_port(), stack_cassandra_storage_port=_free_port(),
        stack_redis_port=_free_port(), stack_kafka_cluster_port=_free_block(2),
        stack_redis_cluster_port=_free_block(16))
    return control.local_settings(moved, nodes)


def timed_up(settings: Settings, label: str, say: Say, maven_repo: Path | None = None,
             nodes: int = 1) -> dict[str, float]:
    """Seconds from `up` to each server healthy, plus "total" and "init"."""
    say(f"[bold]{label}[/]: stack up in {settings.run_dir}")
    started = time.monotonic()
    results = control.up(settings, say=lambda line: say(f"  {line}"), maven_repo=maven_repo,
                         nodes=nodes)
    out = {r.server: r.seconds for r in results}
    out["total"] = time.monotonic() - started
    began = time.monotonic()
    init_kafka(settings, lambda _: None)
    init_cassandra(settings, lambda _: None)
    out["init"] = time.monotonic() - began
    return out


def idle_rss(settings: Settings, idle: float, say: Say) -> dict[str, float]:
    """MiB resident per server after ``idle`` seconds."""
    say(f"  idling {idle:.0f} s before reading RSS ...")
    time.sleep(idle)
    out: dict[str, float] = {}
    for server in control.servers(settings):
        rec = control.our_record(server)
        rss = rss_bytes(rec.pid) if rec else None
        if rss is not None:
            out[server.name] = rss / 2**20
    return out


def _rows(label: str, times: dict[str, float]) -> list[tuple[str, str]]:
    order = ["total", "kafka", "kafka-1", "kafka-2", "kafka-3", "cassandra", "cassandra-1",
             "cassandra-2", "cassandra-3", "redis",
             *(f"redis-{i}" for i in range(1, 7)), "redis-cluster", "init"]
    return [(f"{label}: {'up → all healthy' if k == 'total' else k}", f"{times[k]:.1f} s")
            for k in order if k in times]


def run_bench(settings: Settings, skip_cold: bool, idle: float, record: bool,
              say: Say, nodes: int = 1) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="stumpcast-bench-"))
    rows: list[tuple[str, str]] = []
    skip_cold = skip_cold or nodes == 3
    try:
        cache = settings.cache_dir if skip_cold else tmp / "cache"
        if not skip_cold:
            cold = bench_settings(settings, tmp / "run-cold", cache)
            try:
                rows += _rows("cold (download + start)",
                              timed_up(cold, "cold", say, maven_repo=tmp / "m2"))
            finally:
                control.down(cold)
        warm = bench_settings(settings, tmp / "run-warm", cache, nodes)
        try:
            rows += _rows("warm (jars cached, fresh data)",
                          timed_up(warm, "warm", say, nodes=nodes))
            rss = idle_rss(warm, idle, say)
            rows += [(f"RSS idle: {name}", f"{mib:.0f} MiB") for name, mib in rss.items()]
            rows.append(("RSS idle: total", f"{sum(rss.values()):.0f} MiB"))
            control.down(warm)
            rows += _rows("restart (jars and data present)",
                          timed_up(warm, "restart", say, nodes=nodes))
        finally:
            control.down(warm)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, value in rows:
        say(f"{name:50s} {value}")
    if record:
        notes = (f"Kafka {settings.kafka_version} heap {settings.stack_kafka_heap}, Cassandra "
                 f"{settings.cassandra_version} heap {settings.stack_cassandra_heap}, Redis from "
                 "Debian. One run each; the shared stack was running alongside. Cold = empty "
                 "jar cache and empty Maven repository (downloads from Maven Central).")
        title = ("stack: `stack up` to healthy, and idle RSS" if nodes == 1 else
                 "stack --nodes 3: `stack up --nodes 3` to healthy, and idle RSS")
        if nodes == 3:
            notes += (" Multi-node: 3 Kafka brokers (each its own JVM with that heap), 3 "
                      "Cassandra nodes joining one after the other, a Redis Cluster of 3 "
                      "masters + 3 replicas.")
        record_bench(title, rows, notes)
        say("recorded in BENCHMARKS.md")
    return 0
