"""`stack up`, `down` and `status`: start what is not healthy, stop only what we started.

The imperative shell around the server descriptions: it owns the run folder's pid records and
the waiting. Kafka and Cassandra start concurrently (each in a thread that mostly sleeps) since
together they take most of the start time.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from schemas.settings import Settings
from stumpcast.stack import ports as portcheck
from stumpcast.stack import secrets
from stumpcast.stack.alertmanager_server import AlertmanagerServer
from stumpcast.stack.cassandra_cluster import CONSISTENCY as CASSANDRA_CLUSTER_CONSISTENCY
from stumpcast.stack.cassandra_cluster import HOSTS as CASSANDRA_CLUSTER_HOSTS
from stumpcast.stack.cassandra_cluster import NODE_TYPES as CASSANDRA_CLUSTER_TYPES
from stumpcast.stack.cassandra_cluster import REPLICATION as CASSANDRA_CLUSTER_REPLICATION
from stumpcast.stack.cassandra_server import CassandraServer
from stumpcast.stack.edge_server import CdnA, CdnB, EdgeServer
from stumpcast.stack.errors import (
    PortInUse,
    ServerDied,
    ServerFailed,
    StackError,
    StartTimeout,
)
from stumpcast.stack.kafka_cluster import NODE_TYPES as KAFKA_CLUSTER_TYPES
from stumpcast.stack.kafka_cluster import bootstrap as kafka_cluster_bootstrap
from stumpcast.stack.kafka_server import KafkaServer
from stumpcast.stack.layout import RunLayout
from stumpcast.stack.lb_server import LB_TYPES
from stumpcast.stack.ops_server import OpsServer
from stumpcast.stack.procs import ProcRecord, is_ours, launch, stop, tail
from stumpcast.stack.prometheus_server import PrometheusServer
from stumpcast.stack.redis_cluster import NODE_TYPES as REDIS_CLUSTER_TYPES
from stumpcast.stack.redis_cluster import RedisClusterNode, form
from stumpcast.stack.redis_server import RedisServer
from stumpcast.stack.server import Server, StartContext

SERVER_TYPES: dict[str, type[Server]] = {
    "kafka": KafkaServer, "cassandra": CassandraServer, "redis": RedisServer,
    "prometheus": PrometheusServer, "alertmanager": AlertmanagerServer, "ops": OpsServer,
    "cdn-a": CdnA, "cdn-b": CdnB, **KAFKA_CLUSTER_TYPES, **CASSANDRA_CLUSTER_TYPES,
    **REDIS_CLUSTER_TYPES, **LB_TYPES,
}
SERVER_NAMES: tuple[str, ...] = tuple(SERVER_TYPES)
CORE_NAMES: tuple[str, ...] = ("kafka", "cassandra", "redis")
# `stack up --nodes 3`: what replaces the single nodes: 3 Kafka brokers (KRaft voters all),
# 3 Cassandra nodes on 127.0.0.1-3 and a 3+3 Redis Cluster.
MULTI_NODE_NAMES: tuple[str, ...] = (*KAFKA_CLUSTER_TYPES, *CASSANDRA_CLUSTER_TYPES,
                                     *REDIS_CLUSTER_TYPES)
# `stack up --observe`: Prometheus, Alertmanager and the operations server (/ops, exporter).
OBSERVE_NAMES: tuple[str, ...] = ("prometheus", "alertmanager", "ops")
# `stack up --edge`: the two caching edges (nginx) in front of the media origin and gateway.
EDGE_NAMES: tuple[str, ...] = ("cdn-a", "cdn-b")
LOG_TAIL = 20


def servers(settings: Settings, only: Iterable[str] | None = None,
            observe: bool = False, recorded: bool = True, edge: bool = False,
            nodes: int = 1) -> list[Server]:
    """The chosen servers, in SERVER_NAMES order. Without ``only``: the core three (with
    ``nodes=3``, the multi-node set), plus the observers with ``observe`` and the edges with
    ``edge``, or (``recorded``) those this run folder has a record of, so `down` and `status`
    include what `up --observe`, `up --edge` or `up --nodes 3` started; `up` alone does not
    restart them."""
    layout = RunLayout.at(settings.run_dir)
    if nodes not in (1, 3):
        raise StackError(f"--nodes {nodes}: the local stack runs 1 or 3 nodes per service")
    chosen = list(only) if only else list(CORE_NAMES if nodes == 1 else MULTI_NODE_NAMES)
    unknown = [n for n in chosen if n not in SERVER_TYPES]
    if unknown:
        raise StackError(f"unknown server {', '.join(unknown)}; "
                         f"choose from {', '.join(SERVER_NAMES)}")
    if not only:
        extra = [*(OBSERVE_NAMES if observe else ()), *(EDGE_NAMES if edge else ())]
        optional = (*OBSERVE_NAMES, *EDGE_NAMES, *CORE_NAMES, *MULTI_NODE_NAMES, *LB_TYPES)
        chosen += [n for n in optional if n not in chosen and (n in extra or (
            recorded and ProcRecord.load(layout.pid_record(n)) is not None))]
    return [SERVER_TYPES[n](settings, layout) for n in SERVER_NAMES if n in chosen]


def our_record(server: Server) -> ProcRecord | None:
    """The pid record of ``server`` if that process is still ours; stale records are removed."""
    path = server.layout.pid_record(server.name)
    record = ProcRecord.load(path)
    if record is None:
        return None
    if is_ours(record):
        return record
    path.unlink(missing_ok=True)
    return None


@dataclass(frozen=True)
class UpResult:
    server: str
    action: str            # "started" or "already healthy" or "was starting"
    pid: int | None
    seconds: float


@contextmanager
def exclusive(run_dir: Path, say: Callable[[str], None] = print) -> Iterator[None]:
    """One `up` or `down` at a time per run folder.

    Two `stack up` run at once (a developer's terminal and a test run) both found no pid record
    and both launched Kafka on the same data folder: one died and the other never finished its
    KRaft start. An advisory lock on the run folder makes the second wait for the first.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "stack.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another stack command on {run_dir}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(settings: Settings, only: Iterable[str] | None = None,
       say: Callable[[str], None] = print, maven_repo: Path | None = None,
       chosen: Sequence[Server] | None = None, observe: bool = False,
       edge: bool = False, nodes: int = 1) -> list[UpResult]:
    """Bring every chosen server to healthy; raise StackError naming each one that failed.
    When all six Redis Cluster nodes are among them, form the cluster and wait for it."""
    with exclusive(settings.run_dir, say):
        todo = (list(chosen) if chosen is not None
                else servers(settings, only, observe, recorded=False, edge=edge, nodes=nodes))
        results = _up(settings, todo, say, maven_repo)
        if len([s for s in todo if isinstance(s, RedisClusterNode)]) == len(REDIS_CLUSTER_TYPES):
            started = time.monotonic()
            action = form(settings, say)
            results.append(UpResult("redis-cluster", action, None, time.monotonic() - started))
        return results


def _up(settings: Settings, todo: list[Server], say: Callable[[str], None],
        maven_repo: Path | None) -> list[UpResult]:
    ctx = StartContext(settings, say, maven_repo)
    _check_java(ctx, [s for s in todo if s.needs_java() and not s.probe(1.0)])
    _check_all_ports(todo)
    if any(isinstance(s, (KafkaServer, RedisServer, RedisClusterNode)) for s in todo):
        # Once, before the servers are prepared in parallel threads: each would otherwise
        # generate the missing credentials at the same time (scorers.json replaced by two
        # threads at once failed with FileNotFoundError).
        secrets.ensure(settings)
    results: list[UpResult] = []
    errors: list[StackError] = []
    for wave in sorted({s.wave for s in todo}):
        if errors:  # a later wave needs the earlier ones (a Cassandra node its seed)
            break
        batch = [s for s in todo if s.wave == wave]
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            futures = [pool.submit(_bring_up, s, ctx) for s in batch]
        for future in futures:
            failure = future.exception()
            if failure is None:
                results.append(future.result())
            elif isinstance(failure, StackError):
                errors.append(failure)
            else:
                raise failure
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise StackError("\n\n".join(str(e) for e in errors))
    return results


def _check_all_ports(todo: list[Server]) -> None:
    """Every port of every server about to be launched, before launching any: the nodes of a
    quorum start together, and two brokers launched while the third's port is taken wait for
    a quorum that never comes (seen: they exit after a minute)."""
    errors: list[StackError] = []
    for server in todo:
        if our_record(server) is not None or server.probe(1.0):
            continue
        try:
            check_ports(server)
        except PortInUse as exc:
            errors.append(logged(exc, [server]))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise StackError("\n\n".join(str(e) for e in errors))


def _check_java(ctx: StartContext, needing_java: list[Server]) -> None:
    """Fail fast, before any download, if a server that needs a JDK 17 has none."""
    if needing_java:
        try:
            ctx.java()
        except StackError as exc:
            raise logged(exc, needing_java) from None


def _bring_up(server: Server, ctx: StartContext) -> UpResult:
    started = time.monotonic()
    server.layout.prepare(server.name)
    record = our_record(server)
    if server.probe(2.0):
        return UpResult(server.name, "already healthy", record.pid if record else None, 0.0)
    action = "was starting"
    if record is None:
        try:
            check_ports(server)
            argv = server.prepare(ctx)
        except ServerFailed:
            raise
        except StackError as exc:
            raise logged(exc, [server]) from None
        ctx.say(f"starting {server.name} (log: {server.log_path})")
        record, exit_code = launch(argv, server.log_path, server.marker, server.layout.root)
        record.save(server.layout.pid_record(server.name))
        action = "started"
    else:
        exit_code = None
        ctx.say(f"{server.name}: pid {record.pid} is already starting; waiting for it")
    wait_healthy(server, record, ctx.settings.stack_start_timeout, exit_code)
    seconds = time.monotonic() - started
    ctx.say(f"{server.name} healthy on port {server.ports()[0].number} "
            f"(pid {record.pid}, {seconds:.1f} s)")
    return UpResult(server.name, action, record.pid, seconds)


def logged(exc: StackError, failed: Sequence[Server]) -> StackError:
    """A failure before a server could start, written where its own failures go: its log.

    ``stack logs <server>`` then says why it is not running, and the message names the file.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for server in failed:
        server.layout.prepare(server.name)
        with server.log_path.open("a") as fh:
            fh.write(f"[{stamp} stumpcast] not started: {exc}\n")
    logs = ", ".join(str(s.log_path) for s in failed)
    exc.args = (f"{exc}\nNot started; this is also in {logs} (stumpcast stack logs).",)
    return exc


def check_ports(server: Server) -> None:
    for port in server.ports():
        if not portcheck.is_free(port.number, port.host, port.shared):
            raise PortInUse(server.name, port.number, port.setting,
                            portcheck.holder(port.number), port.host)


def wait_healthy(server: Server, record: ProcRecord, timeout: float,
                 exit_code: Callable[[], int | None] | None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        # A process started here is ours until its exit code says otherwise: right after the
        # fork its /proc cmdline can still be empty (exec under way), so ``is_ours`` would call
        # a live server dead. One adopted from a record has only ``is_ours`` to go by.
        code = exit_code() if exit_code else None
        if code is not None or (exit_code is None and not is_ours(record)):
            server.layout.pid_record(server.name).unlink(missing_ok=True)
            how = f"exited with code {code}" if code is not None else "exited"
            raise ServerDied(server.name, f"{how} while starting", server.log_path,
                             tail(server.log_path, LOG_TAIL))
        if server.probe(3.0):
            return
        if time.monotonic() > deadline:
            raise StartTimeout(
                server.name, f"was not healthy after {timeout:.0f} s (still running as pid "
                f"{record.pid}; raise STUMPCAST_STACK_START_TIMEOUT or run `stumpcast stack "
                "down`)", server.log_path, tail(server.log_path, LOG_TAIL))
        time.sleep(0.5)


@dataclass(frozen=True)
class DownResult:
    server: str
    outcome: str
    pid: int | None


def down(settings: Settings, only: Iterable[str] | None = None) -> list[DownResult]:
    """Stop the processes this run folder recorded, and nothing else."""
    chosen = servers(settings, only)
    with exclusive(settings.run_dir), ThreadPoolExecutor(max_workers=len(chosen) or 1) as pool:
        return list(pool.map(_take_down, chosen))


def _take_down(server: Server) -> DownResult:
    path = server.layout.pid_record(server.name)
    record = ProcRecord.load(path)
    if record is None:
        return DownResult(server.name, "not started by this stack", None)
    outcome = stop(record, server.stop_grace)
    path.unlink(missing_ok=True)
    return DownResult(server.name, outcome, record.pid)


@dataclass(frozen=True)
class ServerStatus:
    server: str
    ports: list[int]
    pid: int | None
    health: str           # "healthy", "starting", "stopped", "not ours", "port taken"
    log: Path

    @property
    def healthy(self) -> bool:
        return self.health in ("healthy", "healthy (not ours)")


def status(settings: Settings, only: Iterable[str] | None = None,
           observe: bool = False, edge: bool = False) -> list[ServerStatus]:
    chosen = servers(settings, only, observe, edge=edge)
    with ThreadPoolExecutor(max_workers=len(chosen) or 1) as pool:
        return list(pool.map(_inspect, chosen))


def _inspect(server: Server) -> ServerStatus:
    record = our_record(server)
    numbers = [p.number for p in server.ports()]
    if server.probe(2.0):
        health = "healthy" if record else "healthy (not ours)"
    elif record:
        health = "starting"
    elif all(portcheck.is_free(p.number, p.host) for p in server.ports()):
        health = "stopped"
    else:
        health = "port taken"
    return ServerStatus(server.name, numbers, record.pid if record else None, health,
                        server.log_path)


def local_settings(settings: Settings, nodes: int = 1) -> Settings:
    """``settings`` pointed at the local stack's ports, with single-node replication (with
    ``nodes=3``: the three brokers, replication factor 3, and the Redis Cluster).

    `stack up` initialises the stack it started, whatever STUMPCAST_KAFKA_BOOTSTRAP etc. say;
    `stack init` on its own uses the settings as given (real clusters included).
    """
    import dataclasses

    from stumpcast.stack.redis_cluster import seeds

    single = dataclasses.replace(
        settings,
        kafka_bootstrap=(f"127.0.0.1:{settings.stack_kafka_port}",),
        kafka_security="sasl",
        kafka_replication_factor=1,
        cassandra_hosts=("127.0.0.1",),
        cassandra_port=settings.stack_cassandra_port,
        cassandra_replication={"class": "SimpleStrategy", "replication_factor": 1},
        redis_url=f"redis://127.0.0.1:{settings.stack_redis_port}/0",
    )
    if nodes == 1:
        return single
    return dataclasses.replace(single, kafka_bootstrap=kafka_cluster_bootstrap(settings),
                               kafka_replication_factor=3, redis_cluster=seeds(settings),
                               cassandra_hosts=CASSANDRA_CLUSTER_HOSTS,
                               cassandra_replication=dict(CASSANDRA_CLUSTER_REPLICATION),
                               cassandra_consistency=CASSANDRA_CLUSTER_CONSISTENCY)


def edge_fault(settings: Settings, name: str, kind: str | None, value: str = "") -> str:
    """Inject a fault into (or clear it from) a running edge of this run folder."""
    server = next((s for s in servers(settings, [name]) if isinstance(s, EdgeServer)), None)
    if server is None:
        raise StackError(f"{name} is not an edge; choose from {', '.join(EDGE_NAMES)}")
    record = our_record(server)
    if record is None:
        raise StackError(f"{name} is not running from this run folder ({settings.run_dir}); "
                         "start it with `stumpcast stack up --edge`")
    try:
        return server.set_fault(record.pid, kind, value)
    except ValueError as exc:
        raise StackError(str(exc)) from None
