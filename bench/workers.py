"""Streams worker processes and replay matches for the streams benchmarks (``bench.streams``,
``bench.streams_faults``): real ``stumpcast streams worker`` processes, as users run them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(log: Path, instance_id: str | None = None,
                 timeout: float = 120) -> tuple[subprocess.Popen[bytes], int]:
    """A ``stumpcast streams worker`` on a free metrics port, returned once /readyz answers
    (it has partitions). ``instance_id``: static group membership (empty: dynamic)."""
    port = free_port()
    env = {**os.environ, "STUMPCAST_STREAMS_METRICS_PORT": str(port),
           "STUMPCAST_STREAMS_INSTANCE_ID": instance_id or "", "STUMPCAST_LOG_LEVEL": "WARNING"}
    exe = Path(sys.executable).with_name("stumpcast")
    with log.open("ab") as out:
        proc = subprocess.Popen([str(exe), "streams", "worker"], env=env, stdout=out,
                                stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.3)
    stop_worker(proc, signal.SIGKILL)
    raise RuntimeError(f"worker not ready; see {log}")


def stop_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def bench_matches(data: Path, n: int, tag: str, prefix: str) -> dict[str, list[Any]]:
    """``n`` Cricsheet matches as events, under fresh ids ``{prefix}-{tag}-{i}``."""
    from streams import cricsheet

    files = sorted(data.glob("*.json"))  # STUMPCAST_CRICSHEET_DIR
    out: dict[str, list[Any]] = {}
    for i in range(n):
        match_id = f"{prefix}-{tag}-{i}"
        out[match_id] = cricsheet.import_match(cricsheet.load(files[i % len(files)]), match_id)
    return out
