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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.hub import Hub
from gateway.limits import Limits
from runtime.eventloop import run_loop, watch_lag

# What a worker process runs: the parent starts W of these with ``--workers 1 --worker-id i``.
SERVE = ("-m", "stumpcast", "gateway", "serve")


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (one descriptor per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(hard, 65536), hard):  # root may raise the hard limit too
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
    return soft


def run(settings: Any, workers: int, port: int | None = None, worker_id: str = "0", *,
        hub: Callable[[Limits], Hub] = Hub, label: str = "hub",
        command: Sequence[str] = SERVE) -> int:
    """Serve with ``workers`` processes. ``hub``, ``label`` (the lag log's name) and ``command``
    (the worker processes' ``python`` arguments) let the benchmark run its baselines in the
    same process shape; the gateway itself keeps the defaults."""
    raise_fd_limit()
    if workers <= 1:
        return _run_one(settings, port, worker_id, hub, label)
    argv = [sys.executable, *command, "--workers", "1"]
    if port is not None:
        argv += ["--port", str(port)]
    env, stats = dict(os.environ), None
    if settings.gateway_stats_dir is None:
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


def _run_one(settings: Any, port: int | None, worker_id: str, hub: Callable[[Limits], Hub],
             label: str) -> int:
    from gateway.server import config_from_settings, serve

    overrides: dict[str, Any] = {"hub": hub, "worker": worker_id, "tame_gc": True}
    stats_dir = settings.gateway_stats_dir  # set by the parent or the bench
    if stats_dir is not None:
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
        lag = loop.create_task(watch_lag(settings.lag_log_dir, f"worker{worker_id}-{label}"))
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config)
        lag.cancel()

    run_loop(main(), settings.event_loop)
    return 0
