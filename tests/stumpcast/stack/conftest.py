"""Helpers for stack tests: a private run folder on free ports, and running the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.settings import Settings
from tests.tools import require_tool

PORT_VARS = ("STUMPCAST_STACK_KAFKA_PORT", "STUMPCAST_STACK_KAFKA_CONTROLLER_PORT",
             "STUMPCAST_STACK_CASSANDRA_PORT", "STUMPCAST_STACK_CASSANDRA_STORAGE_PORT",
             "STUMPCAST_STACK_REDIS_PORT", "STUMPCAST_STACK_PROMETHEUS_PORT",
             "STUMPCAST_STACK_ALERTMANAGER_PORT", "STUMPCAST_OPS_PORT",
             "STUMPCAST_STACK_CDN_A_PORT", "STUMPCAST_STACK_CDN_B_PORT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateStack:
    """A run folder and ports of its own, so tests never touch the shared stack."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STUMPCAST_")}
        self.env["STUMPCAST_RUN_DIR"] = str(run_dir)
        self.env["STUMPCAST_LOG_FORMAT"] = "text"
        for var in PORT_VARS:
            self.env[var] = str(free_port())

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stumpcast", *args],
                              env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def processes(self) -> list[int]:
        """Pids of every process whose command line mentions this run folder."""
        needle = str(self.run_dir.resolve()).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if needle in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(tmp_path / "run")
    yield stack
    stack.cli("stack", "down")  # never leave a test's server behind


@pytest.fixture
def redis_binary() -> str:
    return require_tool("redis-server", "apt-get install redis-server")
