"""The event loop every stumpcast service runs on: uvloop when installed, else asyncio's.

Also a diagnostic the gateway and the benchmarks share: ``watch_lag`` logs the loop's stalls;
and ``raise_if_cancelled``, for loops around libraries that can lose a cancellation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(kind: str = "uvloop") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a dependency), else None: asyncio's own.

    The gateway's cost per delivery is mostly the socket write and the loop around it, the
    streams worker's a round trip per event; uvloop's transports and scheduling (libuv, in
    Cython) take less of both than asyncio's selector loop. The gateway's workers, the
    streams worker and the benchmarks' load clients all run on it. ``kind`` is
    ``Settings.event_loop``: ``STUMPCAST_EVENT_LOOP=asyncio`` keeps asyncio's (to compare, or
    to rule uvloop out)."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_loop(main: Coroutine[Any, Any, T], kind: str = "uvloop") -> T:
    """``asyncio.run`` on the loop of ``loop_factory(kind)``."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task was cancelled and the request was lost.

    Python 3.11's ``asyncio.wait_for`` returns the inner result, without raising, when a cancel
    arrives after the inner awaitable finished but before ``wait_for`` resumed (CPython
    gh-86296; 3.12 rebuilt ``wait_for`` on ``asyncio.timeout``). redis-py sends every command
    through ``wait_for(..., socket_timeout)`` (5 s by default), so a stop's one cancel that
    lands while a command is written is lost and a ``while True`` loop around Redis runs on;
    under load that window is a few loop turns per command. The request stays counted
    (``Task.cancelling()``: nothing here calls ``uncancel``), so a loop that calls this once a
    round ends at its next turn. A task that means to survive a cancel must ``uncancel()``."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _schedstat() -> tuple[int, int]:
    """(on-CPU ns, runnable-but-waiting ns) of this process's main thread."""
    with open("/proc/self/schedstat") as fh:
        cpu, wait, _ = fh.read().split()
    return int(cpu), int(wait)


async def watch_lag(folder: Path | None, label: str, every: float = 0.01,
                    report: float = 0.02) -> None:
    """Diagnostics (``Settings.lag_log_dir``, ``STUMPCAST_LAG_LOG_DIR``; nothing when None):
    sleep ``every`` seconds in a loop and log each overshoot above ``report`` with the wall
    time, and how much of the overshot sleep this process spent on a CPU and waiting for one
    (runnable, not scheduled): busy loop vs. a machine that did not run it. One line per
    stall in ``folder/label-pid.log``: ``wall_s overshoot_ms cpu_ms wait_ms``."""
    if folder is None:
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


class LoadProbe:
    """This process's event-loop lag (how late a 50 ms sleep wakes, worst in the last second)
    and CPU share (process CPU time over wall time, last second): the gateway's own load
    signals for the degradation controller, which reads them from the workers' stats files.
    Also ``wait``: the share of the last second its main thread was runnable but waiting for
    a CPU (``/proc/self/schedstat``; 0 where there is none): how much of the lag is other
    processes' doing, not the loop's own work."""

    def __init__(self, tick: float = 0.05) -> None:
        self.tick = tick
        self.lag_ms = 0.0
        self.cpu = 0.0
        self.wait = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        worst, start, cpu0, wait0 = 0.0, loop.time(), time.process_time(), _waited()
        while True:
            before = loop.time()
            await asyncio.sleep(self.tick)
            worst = max(worst, loop.time() - before - self.tick)
            now = loop.time()
            if now - start >= 1.0:
                cpu, wait = time.process_time(), _waited()
                self.lag_ms, self.cpu = worst * 1000, (cpu - cpu0) / (now - start)
                self.wait = (wait - wait0) / 1e9 / (now - start)
                worst, start, cpu0, wait0 = 0.0, now, cpu, wait


def _waited() -> int:
    """Nanoseconds the main thread has waited on a run queue (0 without schedstat)."""
    try:
        return _schedstat()[1]
    except (OSError, ValueError):
        return 0
