"""A gateway process's housekeeping off the delivery path: its stats file and tamed GC.

Each function takes the ``Gateway`` (``gateway.server``) it runs for; they live here so that
the server module stays about connections.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

GC_FREEZE_EVERY = 1.0       # seconds between freezes of what survived the young collections
GC_FULL_EVERY = 600.0       # at most this often, a full collection reclaims closed connections
GC_FULL_AFTER_CLOSES = 50_000  # ... or sooner once this many connections closed since the last


class P2Rate:
    """P2 deliveries asked of a process per second (shed or not), over the last ~1 s: the
    offered load the degradation controller holds a level on (``runtime.degrade``)."""

    __slots__ = ("then", "count", "rate")

    def __init__(self, now: float) -> None:
        self.then, self.count, self.rate = now, 0, 0.0

    def update(self, total: int, now: float) -> float:
        if now - self.then >= 1.0:
            self.rate = (total - self.count) / (now - self.then)
            self.then, self.count = now, total
        return self.rate


class WorstPerSecond:
    """The worst value of the last whole second (commit to written on every socket, per Redis
    read): the gateway's own share of a delivery's latency, beside what clients measure."""

    __slots__ = ("start", "worst", "last")

    def __init__(self, now: float) -> None:
        self.start, self.worst, self.last = now, 0.0, 0.0

    def observe(self, value: float, now: float) -> None:
        self.roll(now)
        self.worst = max(self.worst, value)

    def roll(self, now: float) -> None:
        if now - self.start >= 1.0:
            self.last = self.worst if now - self.start < 2.0 else 0.0  # an idle second: 0
            self.start, self.worst = now, 0.0


async def dump_stats(gw: Any) -> None:
    """Every 0.5 s, the process's stats as JSON in its stats file (the controller's input,
    ``gateway.metrics.read_siblings``), written to a temporary file and renamed."""
    path = gw.config.stats_path
    if path is None:
        return
    import orjson

    def save(data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    while True:
        now = time.monotonic()
        gw.p2_rate.update(gw.hub.stats.p2_offered, now)
        gw.worst.roll(now)
        data = orjson.dumps({**gw.read_stats(), "pid": os.getpid(), "worker": gw.config.worker})
        # In a thread: a write and a rename can wait for the file system's journal, which
        # other processes' disk writes may hold for hundreds of ms; deliveries must not.
        await asyncio.to_thread(save, data)
        await asyncio.sleep(0.5)


async def tame_gc(gw: Any) -> None:
    """Keep full garbage collections off the delivery path.

    CPython runs a full (generation 2) collection whenever the objects promoted since the
    last one exceed a quarter of all long-lived objects, and every open connection is
    ~100 of them: while connections arrive (a reconnect storm, the start of a match) a
    worker with 10,000 clients stops for 0.5-0.9 s at a time, several times, and every
    delivery waits (measured with ``gc.callbacks`` in ``stumpcast bench gateway``). Here
    young collections run as usual; once a second what survived them is frozen
    (``gc.freeze()``, O(1)) and the automatic full collection is switched off (its
    threshold out of reach). Frozen objects freed by reference counting go as usual; only
    cycles among them (a closed connection leaves ~20 objects in cycles) wait for the
    full collection run here: at most every ``GC_FULL_EVERY`` seconds, and only after
    connections closed, or sooner after ``GC_FULL_AFTER_CLOSES`` closes. Measured at
    20,000 connections: full-collection pauses of up to 0.48 s CPU (0.63 s wall) during
    the connects and after them, none in steady state with this.
    """
    loop = asyncio.get_running_loop()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1 << 30)  # no automatic full collection
    gc.freeze()  # the boot heap (modules, classes, functions) is never garbage
    last_full = loop.time()
    while True:
        await asyncio.sleep(GC_FREEZE_EVERY)
        closes, now = gw.closed_since_gc, loop.time()
        if closes and (now - last_full >= GC_FULL_EVERY or closes >= GC_FULL_AFTER_CLOSES):
            gc.unfreeze()
            gc.collect()
            gw.closed_since_gc, last_full = 0, now
        else:
            gc.collect(1)  # young garbage is collected, not frozen
        gc.freeze()
