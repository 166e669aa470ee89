"""``stumpcast chaos``: the service replicas, HAProxy and the faults, on a `stumpcast stack up
--nodes 3` of the settings' run folder (the settings name it: ``source .run/nodes3.env``).

Beside the stack it uses (it kills and restarts the stack's own nodes through the launcher),
in the top layer, like ``stumpcast.stack.bench``. Everything else it starts itself and stops
at the end: 3 streams workers (static member ids), 2 gateway nodes behind two HAProxy
processes on one port (`stack up --only lb,lb-2`, on /readyz), 2 analytics workers and 2
notifiers, all on Kafka x3, Cassandra x3 (LOCAL_QUORUM) and the Redis Cluster.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chaos_core import ChaosError
from bench.replicas import Replica, free_port
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from stumpcast.stack import control, redis_cluster
from stumpcast.stack.cassandra_cluster import NODE_TYPES as CASSANDRA_NODES
from stumpcast.stack.kafka_cluster import NODE_TYPES as KAFKA_NODES
from stumpcast.stack.kafka_cluster import active_controller
from stumpcast.stack.lb_server import LB_TYPES
from stumpcast.stack.procs import ProcRecord
from stumpcast.stack.redis_cluster import NODE_TYPES as REDIS_NODES

STREAMS_STOP_S = 14.0   # past the streams workers' 10 s broker session timeout (streams/app.py)
KAFKA_STOP_S = 10.0     # past the brokers' 6 s broker.session.timeout.ms (stack configs)
DOWN_S = 5.0            # how long a killed node stays dead before its "supervisor" restarts it


def check_stack(settings: Settings) -> None:
    """The settings name a running 3-node stack of this run folder, or a clear error."""
    how = ("start it with `stumpcast stack up --nodes 3` and point the settings at it with "
           f"`source {settings.run_dir}/nodes3.env`")
    if len(settings.kafka_bootstrap) < 3 or not settings.redis_cluster \
            or len(settings.cassandra_hosts) < 3:
        raise ChaosError("stumpcast chaos needs the multi-node stack (3 Kafka brokers, 3 "
                         f"Cassandra nodes, a Redis Cluster); {how}")
    missing = [n for n in (*KAFKA_NODES, *CASSANDRA_NODES, *REDIS_NODES) if pid_of(settings, n)
               is None]
    if missing:
        raise ChaosError(f"not running from {settings.run_dir}: {', '.join(missing)}; {how}")


def check_capacity(connections: int) -> None:
    """Each HAProxy process holds two descriptors per proxied connection, within the file
    limit this process can give it (raised first, as far as it may go); the kernel spreads
    the clients over the two processes, and either may get a few more than half."""
    from gateway.workers import raise_fd_limit
    from stumpcast.stack.lb_server import LB_TYPES, max_connections

    raise_fd_limit()
    capacity = int(len(LB_TYPES) * max_connections() * 0.9)
    if connections > capacity:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        raise ChaosError(f"--clients: the {len(LB_TYPES)} HAProxy processes can proxy about "
                         f"{capacity} connections under this machine's open-files limit "
                         f"({hard}), and {connections} are needed (the clients and one card "
                         "client per match); run fewer or raise the hard limit (ulimit -Hn)")


def pid_of(settings: Settings, name: str) -> int | None:
    record = ProcRecord.load(control.RunLayout.at(settings.run_dir).pid_record(name))
    if record is None:
        return None
    try:
        os.kill(record.pid, 0)
    except OSError:
        return None
    return record.pid


class Services:
    """The service replicas and the load balancer in front of the gateways."""

    def __init__(self, settings: Settings, log_dir: Path, tag: str) -> None:
        self.settings, self.log_dir = settings, log_dir
        quiet = "WARNING"
        self.streams = [Replica(f"streams-{i}", ["streams", "worker"],
                                "STUMPCAST_STREAMS_METRICS_PORT", log_dir,
                                {"STUMPCAST_STREAMS_INSTANCE_ID": f"chaos-{tag}-{i}"}, quiet)
                        for i in (1, 2, 3)]
        # Behind HAProxy every client has its address: the per-address limits (1,000 open,
        # 50 new a second) would refuse all but the first thousand (settings: "raise it there")
        proxied = {"STUMPCAST_GATEWAY_CONNECTIONS_PER_IP": "1000000",
                   "STUMPCAST_GATEWAY_ACCEPTS_PER_IP": "1000000"}
        self.gateways = [Replica(f"gateway-{i}", ["gateway", "serve", "--workers", "1"],
                                 "STUMPCAST_GATEWAY_PORT", log_dir,
                                 {"STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()), **proxied},
                                 quiet)
                         for i in (1, 2)]
        self.others = [Replica(f"{kind}-{i}", [kind, "worker"],
                               f"STUMPCAST_{kind.upper()}_METRICS_PORT", log_dir, None, quiet)
                       for kind in ("analytics", "notifier") for i in (1, 2)]
        self.lb = dataclasses.replace(
            settings, stack_lb_gateways=tuple(f"127.0.0.1:{g.port}" for g in self.gateways))

    @property
    def all(self) -> list[Replica]:
        return [*self.streams, *self.gateways, *self.others]

    def wait_ready(self, timeout: float = 180) -> None:
        for r in self.all:
            r.wait_ready(timeout)
        control.up(self.lb, list(LB_TYPES), say=lambda _: None)

    def socket_paths(self) -> list[str]:
        layout = control.RunLayout.at(self.lb.run_dir)
        return [kind(self.lb, layout).socket_path for kind in LB_TYPES.values()]

    def wait_lb(self, timeout: float = 30) -> None:
        """Until HAProxy counts both gateways up (its health checks, every second)."""
        from stumpcast.stack.lb_server import backend_sessions

        deadline = time.monotonic() + timeout
        while True:
            try:
                if len(backend_sessions(*self.socket_paths())) == len(self.gateways):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ChaosError("HAProxy did not see both gateways")
            time.sleep(0.3)

    def stop(self) -> None:
        control.down(self.lb, list(LB_TYPES))
        for r in self.all:
            r.stop()


# -- faults ------------------------------------------------------------------------------------

class Fault:
    """One fault: ``inject`` at once, ``restore`` after ``hold`` seconds (as a supervisor or an
    operator would), before the checkpoint."""

    hold = DOWN_S

    def __init__(self, name: str, inject: Callable[[], str], restore: Callable[[], None],
                 hold: float) -> None:
        self.name, self._inject, self.restore, self.hold = name, inject, restore, hold
        self.what = ""

    def inject(self) -> None:
        self.what = self._inject()


def make_fault(name: str, settings: Settings, services: Services, matches: list[str]) -> Fault:
    makers: dict[str, Callable[[Settings, Services, list[str]], Fault]] = {
        "kafka-kill": _kafka_kill, "cassandra-kill": _cassandra_kill,
        "redis-kill": _redis_kill, "streams-kill": _streams_kill,
        "gateway-kill": _gateway_kill, "kafka-stop": _kafka_stop,
        "streams-stop": _streams_stop}
    return makers[name](settings, services, matches)


def _store_node(settings: Settings, name: str, sig: int, hold: float, fault: str) -> Fault:
    def inject() -> str:
        pid = pid_of(settings, name)
        if pid is None:
            raise ChaosError(f"{name} is not running: cannot inject {fault}")
        os.kill(pid, sig)
        return f"{name} (pid {pid})"

    def restore() -> None:
        if sig == signal.SIGSTOP:
            pid = pid_of(settings, name)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        else:
            control.up(settings, [name], say=lambda _: None)  # the node back (a replica)

    return Fault(fault, inject, restore, hold)


def _kafka_kill(settings: Settings, services: Services, matches: list[str]) -> Fault:
    node = active_controller(settings) or 1
    return _store_node(settings, f"kafka-{node}", signal.SIGKILL, DOWN_S, "kafka-kill")


def _kafka_stop(settings: Settings, services: Services, matches: list[str]) -> Fault:
    controller = active_controller(settings) or 1
    node = next(i for i in (1, 2, 3) if i != controller)   # a broker that is not the controller
    return _store_node(settings, f"kafka-{node}", signal.SIGSTOP, KAFKA_STOP_S, "kafka-stop")


def _cassandra_kill(settings: Settings, services: Services, matches: list[str]) -> Fault:
    return _store_node(settings, list(CASSANDRA_NODES)[-1], signal.SIGKILL, DOWN_S,
                       "cassandra-kill")


def _redis_kill(settings: Settings, services: Services, matches: list[str]) -> Fault:
    """The master of the first match's slot: its replica is promoted."""
    from runtime.redisconn import sync_redis

    r: Any = sync_redis(settings, RedisUser.ADMIN, socket_timeout=5)
    try:
        port = r.get_node_from_key(RedisKeys.card(matches[0])).port
    finally:
        r.close()
    name = list(REDIS_NODES)[port - settings.stack_redis_cluster_port]
    fault = _store_node(settings, name, signal.SIGKILL, DOWN_S, "redis-kill")
    restart = fault.restore

    def restore() -> None:
        # The nodes keep nothing on disk (appendonly no): a master restarted before its
        # replica took over would come back empty, still owning its slots, and the replica
        # would copy the empty set. A supervisor restarts it once the replica is promoted.
        _wait(lambda: _promoted(settings, port), 60, f"no replica of {name} took over")
        restart()
        _wait(lambda: redis_cluster.cluster_ok(settings), 60,
              f"{name} did not rejoin the cluster as a synced replica")

    fault.restore = restore
    return fault


def _promoted(settings: Settings, dead_port: int) -> bool:
    """A node that was the dead master's replica is now a master."""
    ports = [settings.stack_redis_cluster_port + i for i in range(len(REDIS_NODES))]
    return any(redis_cluster.replication(settings, p).get("role") == "master"
               and redis_cluster.replication(settings, p).get("connected_slaves", 1) == 0
               for p in ports if p != dead_port)


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ChaosError(f"{what} within {timeout:.0f} s")
        time.sleep(0.3)


def _replica_fault(fault: str, replica: Replica, sig: int, hold: float) -> Fault:
    def inject() -> str:
        pid = replica.proc.pid
        replica.signal(sig)
        return f"{replica.name} (pid {pid})"

    def restore() -> None:
        if sig == signal.SIGSTOP:
            replica.signal(signal.SIGCONT)
        else:
            replica.proc.wait(10)
            replica.start()   # same port, same static member id

    return Fault(fault, inject, restore, hold)


def _streams_kill(settings: Settings, services: Services, matches: list[str]) -> Fault:
    # restarted at once, as a supervisor would: within the session timeout the group keeps
    # its partitions for the same static member id
    return _replica_fault("streams-kill", services.streams[0], signal.SIGKILL, 0.5)


def _streams_stop(settings: Settings, services: Services, matches: list[str]) -> Fault:
    return _replica_fault("streams-stop", services.streams[1], signal.SIGSTOP, STREAMS_STOP_S)


def _gateway_kill(settings: Settings, services: Services, matches: list[str]) -> Fault:
    """The gateway node with the most sessions (HAProxy's count)."""
    from stumpcast.stack.lb_server import backend_sessions

    sessions = backend_sessions(*services.socket_paths())
    busiest = max(sessions, key=lambda k: sessions[k]) if sessions else "gw1"
    victim = services.gateways[int(busiest.removeprefix("gw")) - 1]
    return _replica_fault("gateway-kill", victim, signal.SIGKILL, DOWN_S)
