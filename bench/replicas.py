"""Service replicas as real processes (``stumpcast ... worker``, ``gateway serve``): for the
replica stack tests (``tests/replicas.py`` re-exports this) and ``stumpcast chaos``.

Each replica gets its own metrics port (its /readyz says when it has joined), its own log file,
and can be stopped gracefully (SIGTERM), killed (SIGKILL) or paused (SIGSTOP) mid-run, and
started again on the same port with the same settings, as a supervisor would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, name: str, args: list[str], port_setting: str, log_dir: Path,
                 env: dict[str, str] | None = None, log_level: str = "INFO") -> None:
        self.name, self.port = name, free_port()
        self.log = log_dir / f"{name}.log"
        self.args = args
        self.env = {**os.environ, port_setting: str(self.port), "STUMPCAST_LOG_LEVEL": log_level,
                    **(env or {})}
        self.start()

    def start(self) -> None:
        """(Again) a process with the same arguments, port and settings."""
        exe = Path(sys.executable).with_name("stumpcast")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(exe), *self.args], env=self.env, stdout=out,
                                         stderr=out, start_new_session=True)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                return True
        except OSError:
            return False

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (0 if absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: see {self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout:.0f} s: see "
                                     f"{self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")
