"""`stumpcast stack up|down|status|logs|init` and `stumpcast bench stack`.

Thin: parse arguments, call ``stumpcast.stack``, print. Every ``StackError`` is printed as a
plain message (no traceback) with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from schemas.settings import Settings

# same order as stumpcast.stack.control; `up --observe` starts Prometheus, Alertmanager and the
# operations server, `up --edge` the two caching edges, `up --nodes 3` the Redis Cluster nodes
SERVER_NAMES = ("kafka", "cassandra", "redis", "prometheus", "alertmanager", "ops", "cdn-a",
                "cdn-b", *(f"kafka-{i}" for i in range(1, 4)),
                *(f"cassandra-{i}" for i in range(1, 4)),
                *(f"redis-{i}" for i in range(1, 7)), "lb", "lb-2")
CORE = SERVER_NAMES[:3]
EDGES = SERVER_NAMES[6:8]
Handler = Callable[[argparse.Namespace, Settings], int]


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _guarded(handler: Handler) -> Handler:
    """Print a StackError as the user's next step, not as a traceback."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        from stumpcast.stack.errors import StackError

        try:
            return handler(args, settings)
        except StackError as exc:
            print(f"stumpcast stack: error: {exc}", file=sys.stderr)
            return 1

    return run


def _only(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if n not in SERVER_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma separated subset of {','.join(SERVER_NAMES)}")
    return names


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack import control

    console = _console()
    say = console.print
    started = time.monotonic()
    results = control.up(settings, args.only, say=say, observe=args.observe, edge=args.edge,
                         nodes=args.nodes)
    for r in results:
        if r.action != "started":
            say(f"{r.server}: {r.action}" + (f" (pid {r.pid})" if r.pid else ""))
    chosen = {r.server for r in results}
    if not args.no_init and chosen & {"kafka", "kafka-1", "cassandra", "cassandra-1"}:
        # the node names of --nodes 3 stand for their service
        which = {*chosen, *(n.split("-")[0] for n in chosen if n.endswith("-1"))}
        _init(control.local_settings(settings, args.nodes), which, say)
    say(f"stack up: {', '.join(sorted(chosen))} healthy in {time.monotonic() - started:.1f} s "
        f"(run folder {settings.run_dir})")
    if "redis-cluster" in chosen:
        say(_cluster_env(settings))
    if "ops" in chosen:
        say(f"operations page: http://127.0.0.1:{settings.ops_port}/ops (Prometheus "
            f"http://127.0.0.1:{settings.stack_prometheus_port}, Alertmanager "
            f"http://127.0.0.1:{settings.stack_alertmanager_port})")
    edges = [f"{n} http://127.0.0.1:{_edge_port(settings, n)}" for n in EDGES if n in chosen]
    if edges:
        say(f"edges: {', '.join(edges)} (origin 127.0.0.1:{settings.media_http_port}, "
            f"gateway {settings.gateway_host}:{settings.gateway_port})")
    return 0


def _cluster_env(settings: Settings) -> str:
    """What points the services at the multi-node stack, also written to the run folder."""
    from stumpcast.stack.kafka_cluster import bootstrap
    from stumpcast.stack.redis_cluster import seeds

    text = (f"export STUMPCAST_REDIS_CLUSTER={','.join(seeds(settings))}\n"
            f"export STUMPCAST_KAFKA_BOOTSTRAP={','.join(bootstrap(settings))}\n"
            "export STUMPCAST_KAFKA_REPLICATION_FACTOR=3\n"
            "export STUMPCAST_CASSANDRA_HOSTS=127.0.0.1,127.0.0.2,127.0.0.3\n"
            "export STUMPCAST_CASSANDRA_REPLICATION=NetworkTopologyStrategy:datacenter1=3\n"
            "export STUMPCAST_CASSANDRA_CONSISTENCY=LOCAL_QUORUM\n")
    path = settings.run_dir / "nodes3.env"
    path.write_text(text)
    return f"multi-node settings (also in {path}):\n{text.strip()}"


def _edge_port(settings: Settings, name: str) -> int:
    return settings.stack_cdn_a_port if name == "cdn-a" else settings.stack_cdn_b_port


def _init(settings: Settings, which: set[str], say: Callable[[str], None]) -> None:
    from stumpcast.stack import provision

    if "kafka" in which:
        provision.init_kafka(settings, say)
    if "cassandra" in which:
        provision.init_cassandra(settings, say)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    which = set(args.only or ("kafka", "cassandra"))
    _init(settings, which, _console().print)
    return 0


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack import secrets

    secrets.ensure(settings)
    if settings.redis_auth == "acl":
        # for a Redis this command does not start (compose/: redis-server --aclfile)
        secrets.write_redis_acl(settings, settings.secrets_dir / "redis" / "users.acl")
    print(f"stack secrets: credentials in {settings.secrets_dir} (0600; never printed)")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack import control

    console = _console()
    for r in control.down(settings, args.only):
        pid = f" (pid {r.pid})" if r.pid else ""
        console.print(f"{r.server}: {r.outcome}{pid}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from stumpcast.stack import control

    rows = control.status(settings, args.only, observe=args.observe, edge=args.edge)
    ok = all(r.healthy for r in rows)
    if args.quiet:
        return 0 if ok else 1
    table = Table(title=f"stumpcast stack ({settings.run_dir})")
    for column in ("server", "port", "pid", "health", "log"):
        table.add_column(column)
    colour = {"healthy": "green", "starting": "yellow", "stopped": "dim"}
    for r in rows:
        style = colour.get(r.health, "red" if not r.healthy else "green")
        table.add_row(r.server, ", ".join(map(str, r.ports)), str(r.pid or "-"),
                      f"[{style}]{r.health}[/]", str(r.log))
    _console().print(table)
    return 0 if ok else 1


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack.layout import RunLayout
    from stumpcast.stack.procs import tail

    layout = RunLayout.at(settings.run_dir)
    names = [args.server] if args.server else [n for n in SERVER_NAMES
                                               if n in CORE or layout.log(n).exists()]
    paths = [layout.log(n) for n in names]
    for name, path in zip(names, paths, strict=True):
        if not path.exists():
            print(f"==> {name}: no log yet ({path})")
            continue
        if len(names) > 1:
            print(f"==> {name} ({path}) <==")
        print("\n".join(tail(path, args.lines)))
    if args.follow:
        _follow([p for p in paths if p.exists()], prefix=len(names) > 1)
    return 0


def _follow(paths: list[Any], prefix: bool) -> None:
    """Print lines appended to ``paths`` until Ctrl-C (like tail -f)."""
    handles = []
    for path in paths:
        fh = path.open("r", errors="replace")
        fh.seek(0, 2)
        handles.append((path.stem, fh))
    try:
        while True:
            quiet = True
            for name, fh in handles:
                for line in fh.readlines():
                    quiet = False
                    print(f"{name}: {line}" if prefix else line, end="", flush=True)
            if quiet:
                time.sleep(0.3)
    except KeyboardInterrupt:
        return


def cmd_fault(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack import control

    if args.clear:
        kind, value = None, ""
    elif args.throttle:
        kind, value = "throttle", args.throttle
    else:
        kind, value = "status", str(args.status)
    print(control.edge_fault(settings, args.edge, kind, value))
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from stumpcast.stack.bench import run_bench

    return run_bench(settings, skip_cold=args.skip_cold, idle=args.idle,
                     record=not args.no_record, say=_console().print, nodes=args.nodes)


def register(sub: Any, bench: Any) -> None:
    stack = sub.add_parser(
        "stack", help="the local Kafka + Cassandra + Redis stack (+ --observe, --edge)",
        description="Real Kafka (KRaft), Cassandra and Redis as local processes, with data, "
        "logs and pids in STUMPCAST_RUN_DIR; with `up --observe` also Prometheus, "
        "Alertmanager and the operations server; with `up --edge` also two caching edges "
        "(nginx, cdn-a and cdn-b) in front of the media origin and the gateway. Jars come from "
        "Maven Central into STUMPCAST_CACHE_DIR on first use.")
    cmds = stack.add_subparsers(dest="stack_command", metavar="ACTION")
    cmds.required = True
    only = {"type": _only, "metavar": "SERVERS",
            "help": f"comma separated subset of {','.join(SERVER_NAMES)} (default: "
                    f"{','.join(CORE)}, and the others when --observe or --edge started them)"}

    p = cmds.add_parser("up", help="start what is not healthy, wait until ready, create topics "
                        "and tables", description="Start every server that is not already "
                        "healthy (Kafka and Cassandra concurrently), wait until each answers a "
                        "real request, then create the topics, keyspace and tables.")
    p.add_argument("--only", **only)
    p.add_argument("--no-init", action="store_true", help="skip creating topics and tables")
    p.add_argument("--observe", action="store_true",
                   help="also Prometheus, Alertmanager and the operations server (/ops on "
                   "STUMPCAST_OPS_PORT), scraping every service running on this run folder")
    p.add_argument("--edge", action="store_true",
                   help="also the caching edges cdn-a and cdn-b (nginx) on "
                   "STUMPCAST_STACK_CDN_A_PORT and _B_PORT")
    p.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                   help="1 (default): one node of each; 3: the multi-node stack: 3 Kafka brokers "
                   "(replication factor 3, min.insync.replicas 2) from "
                   "STUMPCAST_STACK_KAFKA_CLUSTER_PORT, 3 Cassandra nodes on 127.0.0.1-3 "
                   "(replication factor 3, LOCAL_QUORUM), joining one at a time, and a Redis "
                   "Cluster, 3 masters + 3 replicas, from STUMPCAST_STACK_REDIS_CLUSTER_PORT")
    p.set_defaults(func=_guarded(cmd_up))

    p = cmds.add_parser("down", help="stop the servers this stack started",
                        description="SIGTERM each recorded process group (after checking it "
                        "is still ours), SIGKILL after a grace period. Data is kept.")
    p.add_argument("--only", **only)
    p.set_defaults(func=_guarded(cmd_down))

    p = cmds.add_parser("status", help="port, pid and health of each server",
                        description="Probe each server with a real request. Exit code 0 only "
                        "if all are healthy.")
    p.add_argument("--only", **only)
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing; exit 0 only if every server is healthy")
    p.add_argument("--observe", action="store_true",
                   help="include Prometheus, Alertmanager and the operations server even if "
                   "this run folder did not start them")
    p.add_argument("--edge", action="store_true",
                   help="include the edges even if this run folder did not start them")
    p.set_defaults(func=_guarded(cmd_status))

    p = cmds.add_parser("logs", help="show a server's log", description="Show the last lines "
                        "of one server's log (or of all), optionally following it.")
    p.add_argument("server", nargs="?", choices=SERVER_NAMES, help="default: all")
    p.add_argument("-n", "--lines", type=int, default=40, help="lines to show (default 40)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=_guarded(cmd_logs))

    p = cmds.add_parser("fault", help="throttle an edge's HLS, make it answer an error, or "
                        "clear that", description="Degrade one running edge (for steering and "
                        "failover tests): an include file in its config folder and a graceful "
                        "reload; waits until the edge reports the new state on /edge/healthz.")
    p.add_argument("edge", choices=EDGES, help="the edge")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--throttle", metavar="RATE",
                     help="limit every HLS response to RATE bytes/s (nginx limit_rate: 100k, 1m)")
    how.add_argument("--status", type=int, metavar="CODE",
                     help="answer every HLS request with this error status (e.g. 503)")
    how.add_argument("--clear", action="store_true", help="remove the fault")
    p.set_defaults(func=_guarded(cmd_fault))

    p = cmds.add_parser("init", help="create topics, keyspace and tables (idempotent)",
                        description="Create the Kafka topics of schemas.topology and the "
                        "Cassandra keyspace and tables on the servers the settings point at "
                        "(STUMPCAST_KAFKA_BOOTSTRAP, STUMPCAST_CASSANDRA_HOSTS, ...), which "
                        "may be real clusters.")
    p.add_argument("--only", type=lambda v: [x for x in _only(v) if x != "redis"],
                   metavar="SERVERS", help="kafka, cassandra or both (default both)")
    p.set_defaults(func=_guarded(cmd_init))

    p = cmds.add_parser("secrets", help="generate missing credentials (never printed)",
                        description="Generate into STUMPCAST_SECRETS_DIR whatever credential "
                        "is missing: a password per Kafka principal, the default scorers' "
                        "Ed25519 keys and ingest tokens, the scorer registry. Files are 0600 in "
                        "a 0700 folder; existing ones are never replaced. `up` and `init` do "
                        "this too.")
    p.set_defaults(func=_guarded(cmd_secrets))

    b = bench.add_parser("stack", help="time from `stack up` to healthy, cold and warm; RSS",
                         description="Start a second stack on shifted ports in a temporary run "
                         "folder: cold (empty jar cache and Maven repository: downloads) and "
                         "warm, and measure each server's resident memory once idle.")
    b.add_argument("--skip-cold", action="store_true", help="only the warm start")
    b.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                   help="the topology to measure (3: `stack up --nodes 3`, warm and restart "
                   "only)")
    b.add_argument("--idle", type=float, default=15.0,
                   help="seconds to wait after healthy before reading RSS (default 15)")
    b.set_defaults(func=_guarded(cmd_bench))
