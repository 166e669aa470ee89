"""Redis Cluster for `stack up --nodes 3`: 6 redis-server processes, 3 masters + 3 replicas.

Each node is a ``Server`` of its own (``redis-1`` .. ``redis-6``), so the launcher's guarantees
hold per node: a pid record it owns, a health wait on PING, the log tail on a failure. Forming
the cluster is one more step once all six answer: ``form`` runs ``redis-cli --cluster create``
the first time (the nodes keep ``nodes.conf`` in their data folders, so a restart rejoins the
same cluster and ``form`` only waits) and then waits until every node reports
``cluster_state:ok``.

Users: every node loads the single Redis's ACL file (``default`` off, one user per service,
``schemas.store_access``), so a service connects to the cluster as the same user with the same
password; replicas authenticate to their masters as ``admin`` (``masteruser``/``masterauth``:
with ``default`` off a replica could not sync otherwise), so the config file holds that
password and is written 0600.

Ports: node i listens on ``STUMPCAST_STACK_REDIS_CLUSTER_PORT + i - 1``; its cluster bus
(``cluster-port``, Redis >= 7) 10 above, instead of the default +10000 which would leave a
port block (cluster.md §0). ``cluster-node-timeout 5000``: a dead master's replica takes over
after ~6-7 s (cluster.md §5.4: 15 s by default; 2 s fails over spuriously when 6 JVMs starve
Redis of CPU). ``cluster-require-full-coverage no``: while a master's slots wait for their
replica, the other masters' matches keep working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import redisconn
from runtime.secrets import SecretMissing
from schemas.settings import Settings
from schemas.store_access import RedisUser
from stumpcast.stack import secrets
from stumpcast.stack.configs import redis_conf
from stumpcast.stack.errors import StackError, ToolMissing
from stumpcast.stack.layout import RunLayout
from stumpcast.stack.probes import redis_ready
from stumpcast.stack.redis_server import redis_binary
from stumpcast.stack.server import Port, Server, StartContext

NODES = 6
REPLICAS = 1        # per master: 3 masters + 3 replicas
BUS_OFFSET = 10
NODE_TIMEOUT_MS = 5000


def node_port(settings: Settings, index: int) -> int:
    return settings.stack_redis_cluster_port + index - 1


def seeds(settings: Settings) -> tuple[str, ...]:
    """The nodes as ``STUMPCAST_REDIS_CLUSTER`` names them."""
    return tuple(f"127.0.0.1:{node_port(settings, i)}" for i in range(1, NODES + 1))


def node_conf(*, port: int, bus_port: int, data_dir: Path, acl_file: Path | None = None,
              master_auth: tuple[str, str] | None = None) -> str:
    """The single node's (configs.redis_conf) without snapshots, plus cluster mode."""
    auth = "" if master_auth is None else \
        f"masteruser {master_auth[0]}\nmasterauth {master_auth[1]}\n"
    return redis_conf(port=port, data_dir=data_dir, acl_file=acl_file, snapshots=False) \
        + auth + f"""\
cluster-enabled yes
cluster-config-file nodes.conf
cluster-port {bus_port}
cluster-node-timeout {NODE_TIMEOUT_MS}
cluster-require-full-coverage no
"""


class RedisClusterNode(Server):
    """One node; ``index`` (1..6) is set by the subclasses below."""

    index = 0
    stop_grace = 15.0

    @property
    def port(self) -> int:
        return node_port(self.settings, self.index)

    def ports(self) -> list[Port]:
        setting = "STUMPCAST_STACK_REDIS_CLUSTER_PORT"
        return [Port(self.port, setting, "client"),
                Port(self.port + BUS_OFFSET, setting, "cluster bus")]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def probe(self, timeout: float = 5.0) -> bool:
        return redis_ready(self.url, min(timeout, 2.0), admin_auth(self.settings))

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = redis_binary()
        acl_file, auth = None, admin_auth(self.settings)
        if auth is not None:
            acl_file = self.layout.conf(self.name) / "users.acl"
            secrets.write_redis_acl(self.settings, acl_file)
        conf = self.layout.conf(self.name) / "redis.conf"
        text = node_conf(port=self.port, bus_port=self.port + BUS_OFFSET,
                         data_dir=self.layout.data(self.name), acl_file=acl_file,
                         master_auth=auth)
        conf.unlink(missing_ok=True)  # may hold the admin password: created afresh, 0600
        secrets.write_private(conf, text.encode())
        return [binary, str(conf)]


NODE_TYPES: dict[str, type[Server]] = {
    f"redis-{i}": type(f"RedisClusterNode{i}", (RedisClusterNode,),
                       {"name": f"redis-{i}", "index": i})
    for i in range(1, NODES + 1)
}


def admin_auth(settings: Settings) -> tuple[str, str] | None:
    """The ACL user ``admin``'s credentials, None with STUMPCAST_REDIS_AUTH=none (or before
    `stack up` generated them: then nothing of ours runs)."""
    try:
        return redisconn.credentials(settings, RedisUser.ADMIN)
    except SecretMissing:
        return None


def _node(settings: Settings, port: int, timeout: float) -> Any:
    return redisconn.connect(f"redis://127.0.0.1:{port}/0", admin_auth(settings),
                             socket_timeout=timeout, socket_connect_timeout=timeout)


def info(settings: Settings, port: int, timeout: float = 2.0) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict; empty when it does not answer."""
    import redis

    client = _node(settings, port, timeout)
    try:
        text = client.execute_command("CLUSTER INFO")
    except (redis.RedisError, OSError):
        return {}
    finally:
        client.close()
    if isinstance(text, dict):  # redis-py parses the reply into a dict of strings
        return {str(k): str(v) for k, v in text.items()}
    raw = text.decode() if isinstance(text, bytes) else str(text)
    return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


def replication(settings: Settings, port: int, timeout: float = 2.0) -> dict[str, Any]:
    """``INFO replication`` of one node; empty when it does not answer."""
    import redis

    client = _node(settings, port, timeout)
    try:
        return dict(client.info("replication"))
    except (redis.RedisError, OSError):
        return {}
    finally:
        client.close()


def cluster_ok(settings: Settings) -> bool:
    """Every node answers and says ``cluster_state:ok`` with all 16384 slots assigned, and
    every replica has synced with its master. The last matters: a replica that never finished
    its first sync refuses to take over a dead master ("Disconnected from master for longer
    than allowed"), seen when a master was killed right after `stack up` returned."""
    for i in range(1, NODES + 1):
        port = node_port(settings, i)
        state = info(settings, port)
        if state.get("cluster_state") != "ok" or state.get("cluster_slots_assigned") != "16384":
            return False
        role = replication(settings, port)
        if role.get("role") == "slave" and role.get("master_link_status") != "up":
            return False
    return True


def form(settings: Settings, say: Callable[[str], None] = print,
         timeout: float = 60.0) -> str:
    """Create the cluster if no node knows of one, then wait for ``cluster_state:ok``."""
    layout = RunLayout.at(settings.run_dir)
    action = "already formed"
    first = info(settings, node_port(settings, 1))
    if not cluster_ok(settings) and first.get("cluster_known_nodes") == "1":
        _create(settings, layout)
        action = "created"
    deadline = time.monotonic() + timeout
    while not cluster_ok(settings):
        if time.monotonic() > deadline:
            states = {f"redis-{i}": info(settings, node_port(settings, i)).get(
                "cluster_state", "no answer") for i in range(1, NODES + 1)}
            raise StackError(f"the Redis Cluster is not ok after {timeout:.0f} s: {states}; see "
                             f"{layout.log('redis-cluster')} and `stumpcast stack logs redis-1`")
        time.sleep(0.5)
    say(f"redis cluster {action}: {NODES // (REPLICAS + 1)} masters, "
        f"{NODES - NODES // (REPLICAS + 1)} replicas")
    return action


def _create(settings: Settings, layout: RunLayout) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ToolMissing("redis-cli is not on PATH. Install it "
                          "(Debian/Ubuntu: apt-get install redis-tools).")
    argv = [cli, "--cluster", "create", *seeds(settings), "--cluster-replicas", str(REPLICAS),
            "--cluster-yes"]
    env = dict(os.environ)
    auth = admin_auth(settings)
    if auth is not None:  # the password through the environment, never on a command line
        argv += ["--user", auth[0]]
        env["REDISCLI_AUTH"] = auth[1]
    log = layout.log("redis-cluster")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        done = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=60,
                              check=False, env=env)
    if done.returncode != 0:
        raise StackError(f"`redis-cli --cluster create` failed (exit {done.returncode}); "
                         f"its output is in {log}")
