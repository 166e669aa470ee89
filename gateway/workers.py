"""Run the gateway: one process, or N processes sharing the port with SO_REUSEPORT.

The kernel spreads new connections over the listening processes, so each core runs its own
event loop, feed and cache. The parent only starts the workers, forwards SIGTERM/SIGINT and
waits; a worker that dies is reported and the parent exits non-zero (a supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stumpcast.eventloop import loop_factory, run_loop  # noqa: F401 - re-exported


def _schedstat() -> tuple[int, int]:
    """(on-CPU ns, runnable-but-waiting ns) of this process's main thread."""
    with open("/proc/self/schedstat") as fh:
        cpu, wait, _ = fh.read().split()
    return int(cpu), int(wait)


async def watch_lag(label: str, every: float = 0.01, report: float = 0.02) -> None:
    """Diagnostics (``STUMPCAST_LAG_LOG_DIR``): sleep ``every`` seconds in a loop and log each
    overshoot above ``report`` with the wall time, and how much of the overshot sleep this
    process spent on a CPU and waiting for one (runnable, not scheduled): busy loop vs. a
    machine that did not run it. One line per stall: ``wall_s overshoot_ms cpu_ms wait_ms``."""
    folder = os.environ.get("STUMPCAST_LAG_LOG_DIR")
    if not folder:
        return
    loop = asyncio.get_running_loop()
    with open(Path(folder) / f"{label}-{os.getpid()}.log", "a", buffering=1) as fh:
        while True:
            t0, (c0, w0) = loop.time(), _schedstat()
            await asyncio.sleep(every)
            over = loop.time() - t0 - every
            if over > report:
                c1, w1 = _schedstat()
                fh.write(f"{time.time():.3f} {over * 1e3:.1f} {(c1 - c0) / 1e6:.1f} "
                         f"{(w1 - w0) / 1e6:.1f}\n")


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (one descriptor per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(hard, 65536), hard):  # root may raise the hard limit too
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
    return soft


def run(settings: Any, workers: int, port: int | None = None, mode: str = "hub",
        worker_id: str = "0") -> int:
    raise_fd_limit()
    if workers <= 1:
        return _run_one(settings, port, mode, worker_id)
    argv = [sys.executable, "-m", "stumpcast", "gateway", "serve", "--workers", "1",
            "--mode", mode]
    if port is not None:
        argv += ["--port", str(port)]
    env, stats = dict(os.environ), None
    if not env.get("STUMPCAST_GATEWAY_STATS_DIR"):
        # Where workers leave their counters for each other's /metrics (one scrape, all workers).
        stats = Path(tempfile.mkdtemp(prefix="stumpcast-gateway-stats-"))
        env["STUMPCAST_GATEWAY_STATS_DIR"] = str(stats)
    children = [subprocess.Popen([*argv, "--worker-id", str(i)], env=env)
                for i in range(workers)]
    stop = {"now": False}

    def forward(signum: int, _frame: Any) -> None:
        stop["now"] = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while all(c.poll() is None for c in children) and not stop["now"]:
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    codes = [c.wait() for c in children]
    if not stop["now"]:
        died = ", ".join(f"worker {i}: exit {c}" for i, c in enumerate(codes))
        print(f"stumpcast gateway: a worker ended, all stopped ({died})", file=sys.stderr)
    if stats is not None:
        shutil.rmtree(stats, ignore_errors=True)
    return 0 if stop["now"] else max(abs(c) for c in codes) or 1


def _run_one(settings: Any, port: int | None, mode: str, worker_id: str) -> int:
    from gateway.server import config_from_settings, serve

    overrides: dict[str, Any] = {"mode": mode, "worker": worker_id, "tame_gc": True}
    stats_dir = os.environ.get("STUMPCAST_GATEWAY_STATS_DIR")  # set by the parent or the bench
    if stats_dir:
        overrides["stats_path"] = Path(stats_dir) / f"worker-{worker_id}.json"
    if port is not None:
        overrides["port"] = port
    config = config_from_settings(settings, **overrides)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        lag = loop.create_task(watch_lag(f"worker{worker_id}-{mode}"))
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config)
        lag.cancel()

    run_loop(main())
    return 0
