"""The rig of `stumpcast bench gateway`: the gateway processes, the load generators, the driver.

The gateway runs in its own processes (``stumpcast gateway serve --workers W``, or
``python -m bench.gateway.serve`` for the baselines), the load generators (``loadclient``) in
theirs, and this process drives updates into a private Redis through the reference writer (the
view contract). ``phases`` measures with it; ``run`` puts it together.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path
from typing import Any

import orjson

from bench.gateway.writer import ViewWriter
from runtime import redisconn
from schemas.store_access import RedisUser


class Rig:
    """The gateway processes, the load generators and the driver of one run."""

    def __init__(self, args: Any, settings: Any, cards: list[dict[str, Any]]) -> None:
        self.args, self.settings, self.cards = args, settings, cards
        self.matches = [f"bench{i}" for i in range(args.matches)]
        self.hot = "benchhot"
        self.stats_dir = Path(tempfile.mkdtemp(prefix="stumpcast-bench-"))
        self.gateway: subprocess.Popen[bytes] | None = None
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.cursor: dict[str, int] = {}
        self.commits = 0
        self.live: dict[str, int] = {}  # matches the clients currently watch
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.redis_url = settings.redis_url
        self.redis_auth = redisconn.credentials(settings, RedisUser.ADMIN)
        self.redis_env = {"STUMPCAST_REDIS_URL": self.redis_url}

    # -- a private Redis: nobody else's commands in the counts, nobody else's load on it -------

    def start_redis(self) -> None:
        port = free_port()
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxclients", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        # no ACL users on the private Redis: the gateway connects without credentials too
        self.redis_auth = None
        self.redis_env = {"STUMPCAST_REDIS_URL": self.redis_url, "STUMPCAST_REDIS_AUTH": "none"}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop_redis(self) -> None:
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)
            self.redis_proc = None

    # -- gateway -------------------------------------------------------------------------------

    def start_gateway(self, mode: str, workers: int | None = None) -> None:
        """The gateway (``mode`` "hub") or a baseline hub, in ``workers`` processes (default
        ``--workers``)."""
        workers = workers or self.args.workers
        for f in self.stats_dir.glob("*.json"):
            f.unlink()
        env = {**os.environ, "STUMPCAST_GATEWAY_STATS_DIR": str(self.stats_dir),
               **self.redis_env,
               "STUMPCAST_GATEWAY_ACCEPTS_PER_SECOND": "4000",
               # every load client connects from loopback: one address for the whole audience
               "STUMPCAST_GATEWAY_CONNECTIONS_PER_IP": "1000000",
               "STUMPCAST_GATEWAY_ACCEPTS_PER_IP": "4000",
               # an admin port of its own: the environment's may be held by another gateway
               "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()),
               "STUMPCAST_LOG_LEVEL": "WARNING"}
        # The hub is the gateway's own command; a baseline runs the same gateway on its hub.
        command = (["-m", "stumpcast", "gateway", "serve"] if mode == "hub"
                   else ["-m", "bench.gateway.serve", "--mode", mode])
        self.gateway = subprocess.Popen(
            [sys.executable, *command, "--workers", str(workers), "--port",
             str(self.args.port)], env=env)
        deadline = time.monotonic() + 30
        while len(self.worker_stats()) < workers:
            if time.monotonic() > deadline or self.gateway.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)

    def assert_alive(self, phase: str) -> None:
        """Every worker still runs: figures from a half-dead gateway are not figures."""
        if self.gateway is None or self.gateway.poll() is not None:
            code = None if self.gateway is None else self.gateway.returncode
            raise RuntimeError(f"the gateway exited during {phase} (code {code})")
        for s in self.worker_stats():
            if not Path(f"/proc/{s['pid']}").exists():
                raise RuntimeError(f"gateway worker {s.get('worker')} (pid {s['pid']}) died "
                                   f"during {phase}")

    def stop_gateway(self) -> None:
        self.call_all("abort", None)
        if self.gateway is not None:
            workers = [int(s["pid"]) for s in self.worker_stats()]
            self.gateway.terminate()
            try:
                self.gateway.wait(20)
            except subprocess.TimeoutExpired:
                self.gateway.kill()  # the parent only; its workers got SIGTERM from it first
                self.gateway.wait(5)
            for pid in workers:  # a worker still draining after 20 s would hold the port
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    ours = b"gateway\0serve" in cmd or b"bench.gateway.serve" in cmd
                    if ours and str(self.args.port).encode() in cmd:
                        os.kill(pid, signal.SIGKILL)  # ours, not a reused pid
            self.gateway = None
            time.sleep(1.0)

    def worker_stats(self) -> list[dict[str, Any]]:
        out = []
        for f in self.stats_dir.glob("worker-*.json"):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                out.append(orjson.loads(f.read_bytes()))
        return out

    def stat_sum(self, name: str) -> float:
        return sum(float(s.get(name, 0)) for s in self.worker_stats())

    def cpu_seconds(self) -> float:
        total = 0.0
        for s in self.worker_stats():
            with open(f"/proc/{s['pid']}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def server_pids(self) -> list[int]:
        """The gateway's processes: its workers and the parent that started them."""
        pids = [int(s["pid"]) for s in self.worker_stats()]
        if self.gateway is not None and self.gateway.pid not in pids:
            pids.append(self.gateway.pid)
        return pids

    def rss_bytes(self) -> int:
        total = 0
        for s in self.worker_stats():
            with open(f"/proc/{s['pid']}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    # -- load generators -----------------------------------------------------------------------

    def start_clients(self) -> None:
        from bench.gateway import loadclient

        ctx = multiprocessing.get_context("spawn")
        for _ in range(self.args.client_procs):
            parent, child = ctx.Pipe()
            # --compete (the scenarios' default): normal priority, like a real competing process
            compete = bool(getattr(self.args, "compete", False))
            proc = ctx.Process(target=loadclient.main,
                               args=(child, self.args.port, self.settings, compete), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call_all(self, cmd: str, arg: Any, per_proc: list[Any] | None = None) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            pipe.send((cmd, per_proc[i] if per_proc is not None else arg))
        return [pipe.recv() for pipe in self.pipes]

    def _open(self, spread: list[str], n: int) -> float:
        """Ask the load processes for ``n`` clients over ``spread`` (round robin); the start."""
        k = len(self.pipes)
        shares = [[spread[i % len(spread)] for i in range(j, n, k)] for j in range(k)]
        start = time.monotonic()
        self.call_all("connect", None, [{"matches": s, "rate": 1500.0} for s in shares])
        return start

    def connect(self, spread: list[str]) -> float:
        n = self.args.connections
        start = self._open(spread, n)
        deadline = time.monotonic() + 60
        while self.stat_sum("subscriptions") < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return time.monotonic() - start

    def connect_ready(self, spread: list[str], n: int, timeout: float = 90.0) -> tuple[float, int]:
        """``n`` clients over the channels of ``spread`` (round robin) on the current target
        (``target`` command): the time until the server confirmed every subscription (or
        ``timeout``) and how many it confirmed."""
        start = self._open(spread, n)
        ready, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum(self.call_all("ready", None))
            if ready >= n:
                break
            time.sleep(0.2)
        return time.monotonic() - start, ready

    def wait_covered(self, expected: int, timeout: float, poll: float = 0.25) -> bool:
        """Until the clients hold ``expected`` updates (work completed), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.call_all("progress", None)) >= expected:
                return True
            time.sleep(poll)
        return False

    def reports(self) -> list[dict[str, Any]]:
        finals = {m: st.seq for m, st in self.writer.state.items()}
        return self.call_all("report", finals)

    # -- driver --------------------------------------------------------------------------------

    async def publish_round(self, matches: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in matches:
                i = self.cursor.get(m, 0) + 1
                self.cursor[m] = i
                await self.writer.publish(m, self.cards[i % len(self.cards)], pipe=pipe)
            await pipe.execute()
        self.commits += len(matches)

    async def drive(self, matches: list[str], rounds: int, rate: float | None) -> float:
        start = time.monotonic()
        for r in range(rounds):
            await self.publish_round(matches)
            if rate:
                ahead = start + (r + 1) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        return time.monotonic() - start

    async def setup_redis(self) -> None:
        self.redis = redisconn.connect(self.redis_url, self.redis_auth, asyncio=True)
        self.writer = ViewWriter(self.redis)
        for m in [*self.matches, self.hot]:
            await self.writer.delete(m)
            await self.writer.publish(m, self.cards[0])

    async def redis_calls(self) -> dict[str, int]:
        """Calls per command on the private Redis (commands run by Lua scripts included)."""
        info = await self.redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


# Commands only the driver (the reference writer's script) and this process issue; the gateway
# never does. On the private Redis every other command is the gateway's.
DRIVER_COMMANDS = {"evalsha", "eval", "script|load", "script", "time", "hget", "hmget", "set",
                   "hset", "xadd", "zadd", "del", "zrem", "info"}
# What a snapshot or resume costs when the cache cannot answer it: a view load (GET, HGETALL,
# XREVRANGE) or a notes read (XRANGE, XREVRANGE).
PER_CLIENT_READS = {"get", "xrevrange", "xrange"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def latencies(reports: list[dict[str, Any]]) -> list[float]:
    out = array("f")
    for r in reports:
        out.frombytes(r["latency"])
    return list(out)


def last_client(reports: list[dict[str, Any]]) -> list[float]:
    """Per update: the latency of the last client to get it (max over all processes)."""
    worst: dict[Any, float] = {}
    for r in reports:
        for key, lat in r["last"].items():
            worst[key] = max(worst.get(key, 0.0), lat)
    return list(worst.values())


def total(reports: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in reports)


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
