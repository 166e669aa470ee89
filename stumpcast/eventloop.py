"""The event loop every stumpcast service runs on: uvloop when installed, else asyncio's."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a dependency), else None: asyncio's own.

    The gateway's cost per delivery is mostly the socket write and the loop around it, the
    streams worker's a round trip per event; uvloop's transports and scheduling (libuv, in
    Cython) take less of both than asyncio's selector loop. The gateway's workers, the
    streams worker and the benchmarks' load clients all run on it.
    ``STUMPCAST_EVENT_LOOP=asyncio`` keeps asyncio's (to compare, or to rule uvloop out)."""
    if os.environ.get("STUMPCAST_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop of ``loop_factory``."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
