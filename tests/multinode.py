"""One `stumpcast stack up --nodes 3` for the whole test session (the ``nodes3`` fixture):
Kafka x3, Cassandra x3 and a 3+3 Redis Cluster in a run folder of their own, on free ports,
shared by the multi-node tests (the store fault tests, the gateway on the cluster and the
chaos suite) instead of each starting its own (~2 min saved on 2 cores). Those tests run last
(``tests/conftest.py``), so the nodes stop as soon as the suite ends.

Each test that kills or stops a node brings it back before it ends, as a supervisor would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from schemas.settings import Settings
from stumpcast.stack.ports import is_free
from tests.replicas import free_port

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def free_everywhere(span: int = 1, extra: tuple[int, ...] = ()) -> int:
    """A port free on every node address with the ``span`` after it (and ``extra`` offsets)."""
    while True:
        base = free_port()
        offsets = (*range(span), *extra)
        if base + max(offsets) < 65536 and all(is_free(base + i, h) for i in offsets
                                               for h in HOSTS):
            return base


class MultiNode:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STUMPCAST_")}
        self.env.update({
            "STUMPCAST_RUN_DIR": str(run_dir), "STUMPCAST_LOG_FORMAT": "text",
            "STUMPCAST_STACK_KAFKA_CLUSTER_PORT": str(free_everywhere(2)),
            "STUMPCAST_STACK_CASSANDRA_PORT": str(free_everywhere()),
            "STUMPCAST_STACK_CASSANDRA_STORAGE_PORT": str(free_everywhere()),
            # 6 nodes and their cluster buses 10 above
            "STUMPCAST_STACK_REDIS_CLUSTER_PORT": str(free_everywhere(6, tuple(range(10, 16)))),
            "STUMPCAST_STACK_LB_PORT": str(free_port())})

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stumpcast", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def up(self) -> None:
        done = self.cli("stack", "up", "--nodes", "3")
        if done.returncode != 0:
            raise RuntimeError(f"stack up --nodes 3 failed:\n{done.stdout}\n{done.stderr}")
        for line in (self.run_dir / "nodes3.env").read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            self.env[name] = value

    def down(self) -> None:
        self.cli("stack", "down", timeout=180)

    @property
    def settings(self) -> Settings:
        """The settings of the services on these nodes (``nodes3.env`` applied), as
        `stack up --nodes 3` itself uses them (``control.local_settings``)."""
        from stumpcast.stack import control

        return control.local_settings(Settings.from_env(self.env), nodes=3)
