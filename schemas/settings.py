"""One settings object, read from documented ``STUMPCAST_*`` environment variables.

Nothing here runs at import: ``Settings.from_env()`` is called by the CLI's ``main`` and the
result is passed down. The same object points stumpcast at the local stack (the defaults) or at
real clusters (several Kafka bootstrap servers, several Cassandra contact points, a replication
map, any Redis URL). Every variable is declared once in ``SETTINGS`` with its meaning, so the
docs, the Compose file test and the error messages all read the same table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class SettingsError(ValueError):
    """A ``STUMPCAST_*`` variable has a value stumpcast cannot use. The message names it."""


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port must be between 1 and 65535")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _send_threads(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 4:
        raise ValueError("must be 1 to 4 threads")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _part_target(raw: str) -> float:
    value = float(raw)
    if not 0.1 <= value <= 2.0:
        raise ValueError("must be 0.1 to 2 seconds (LL-HLS parts are usually 0.33-1 s)")
    return value


def _host_ports(raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ValueError("give at least one host:port, comma separated")
    for item in items:
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{item!r} is not host:port")
        _port(port)
    return items


def _optional_host_ports(raw: str) -> tuple[str, ...]:
    """Empty: none; otherwise as ``_host_ports``."""
    return _host_ports(raw) if raw.strip() else ()


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _hosts(raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ValueError("give at least one host, comma separated")
    return items


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return raw


def _replication(raw: str) -> dict[str, Any]:
    """``SimpleStrategy:1`` or ``NetworkTopologyStrategy:dc1=3,dc2=3``."""
    strategy, sep, rest = raw.partition(":")
    if not sep or not rest:
        raise ValueError("use SimpleStrategy:N or NetworkTopologyStrategy:dc1=N,dc2=N")
    if strategy == "SimpleStrategy":
        return {"class": "SimpleStrategy", "replication_factor": _positive_int(rest)}
    if strategy == "NetworkTopologyStrategy":
        out: dict[str, Any] = {"class": "NetworkTopologyStrategy"}
        for pair in rest.split(","):
            dc, eq, n = pair.partition("=")
            if not eq or not dc.strip():
                raise ValueError(f"{pair!r} is not dc=N")
            out[dc.strip()] = _positive_int(n)
        return out
    raise ValueError(f"unknown strategy {strategy!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


_PATHWAY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


def pathway_id(raw: str) -> str:
    """A content-steering pathway (CDN) id: letters, digits, '.', '_' and '-' (1-32 chars)."""
    if not _PATHWAY_ID.match(raw):
        raise ValueError(f"{raw!r} is not a pathway id (letters, digits, . _ -; 1-32 chars)")
    return raw


def _pathways(raw: str) -> tuple[tuple[str, str], ...]:
    """``cdn-a=http://host:port,cdn-b=http://host:port``: (id, base URL) pairs; empty: none."""
    out: list[tuple[str, str]] = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        ident, eq, url = item.partition("=")
        parsed = urlparse(url.strip())
        if not eq or parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ValueError(f"{item!r} is not id=http(s)://host[:port]")
        out.append((pathway_id(ident.strip()), url.strip().rstrip("/")))
    if len({ident for ident, _ in out}) != len(out):
        raise ValueError("pathway ids must be unique")
    return tuple(out)


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


# The repository's folder: relative data paths are taken from here, not from the working folder.
REPO = Path(__file__).resolve().parents[1]


def _repo_path(raw: str) -> Path:
    return Path(os.path.normpath(REPO / Path(raw).expanduser()))  # an absolute one replaces REPO


def _env(name: str, default: str | None, parse: Callable[[str], Any], doc: str) -> Any:
    """Declare a dataclass field bound to one environment variable."""
    meta = {"env": name, "default": default, "parse": parse, "doc": doc}
    return field(default=None, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # -- where the pipeline's servers are (local stack by default, any cluster otherwise) --
    kafka_bootstrap: tuple[str, ...] = _env(
        "STUMPCAST_KAFKA_BOOTSTRAP", None, _host_ports,
        "Kafka bootstrap servers, host:port, comma separated. "
        "Default: the local stack's broker.")
    kafka_replication_factor: int = _env(
        "STUMPCAST_KAFKA_REPLICATION_FACTOR", "1", _positive_int,
        "Replication factor for the topics stumpcast creates.")
    redis_url: str = _env(
        "STUMPCAST_REDIS_URL", None, _redis_url,
        "Redis URL for the scorecard views. Default: the local stack's Redis.")
    cassandra_hosts: tuple[str, ...] = _env(
        "STUMPCAST_CASSANDRA_HOSTS", "127.0.0.1", _hosts,
        "Cassandra contact points, comma separated.")
    cassandra_port: int = _env(
        "STUMPCAST_CASSANDRA_PORT", None, _port,
        "Cassandra native (CQL) port. Default: the local stack's.")
    cassandra_keyspace: str = _env(
        "STUMPCAST_CASSANDRA_KEYSPACE", "stumpcast", str,
        "Keyspace of the event store.")
    cassandra_replication: dict[str, Any] = _env(
        "STUMPCAST_CASSANDRA_REPLICATION", "SimpleStrategy:1", _replication,
        "Keyspace replication: SimpleStrategy:N or NetworkTopologyStrategy:dc1=N,dc2=N.")
    kafka_security: str = _env(
        "STUMPCAST_KAFKA_SECURITY", "sasl", _choice("sasl", "plaintext"),
        "Kafka client security: sasl (SASL_PLAINTEXT, SCRAM-SHA-512, each service as its own "
        "principal, passwords from STUMPCAST_SECRETS_DIR) or plaintext (no authentication; "
        "only for a broker that has no SASL listener).")
    secrets_dir: Path = _env(
        "STUMPCAST_SECRETS_DIR", None, _path,
        "Folder of credentials (mode 0700, files 0600): kafka/<principal>.password, scorers/"
        "<id>.key and .token. Default: <STUMPCAST_RUN_DIR>/secrets, generated by `stack up`.")
    scorer_registry: Path = _env(
        "STUMPCAST_SCORER_REGISTRY", None, _path,
        "The scorer registry (JSON: scorer id -> Ed25519 public key, allowed sources, ingest "
        "token hash). Default: <STUMPCAST_SECRETS_DIR>/scorers.json.")
    scorer_registry_check: float = _env(
        "STUMPCAST_SCORER_REGISTRY_CHECK", "2", _positive_float,
        "Seconds between checks of the scorer registry file for changes: the streams worker "
        "and the ingest API re-read it, so an added or revoked scorer takes effect without a "
        "restart.")
    redis_auth: str = _env(
        "STUMPCAST_REDIS_AUTH", "acl", _choice("acl", "none"),
        "Redis client authentication: acl (each service as its own ACL user, password from "
        "STUMPCAST_SECRETS_DIR/redis/<user>.password) or none (a Redis without ACL users).")
    cassandra_auth: str = _env(
        "STUMPCAST_CASSANDRA_AUTH", "password", _choice("password", "none"),
        "Cassandra client authentication: password (PasswordAuthenticator, each service as its "
        "own role, password from STUMPCAST_SECRETS_DIR/cassandra/<role>.password) or none "
        "(a cluster with AllowAllAuthenticator).")
    cassandra_consistency: str = _env(
        "STUMPCAST_CASSANDRA_CONSISTENCY", "LOCAL_ONE",
        _choice("LOCAL_ONE", "LOCAL_QUORUM", "QUORUM", "ONE", "ALL"),
        "Consistency level of every Cassandra read and write. LOCAL_ONE (the driver's default) "
        "for one node; LOCAL_QUORUM with replication factor 3, so a read sees every write "
        "acknowledged before it while one replica is down (2 + 2 > 3).")
    redis_cluster: tuple[str, ...] = _env(
        "STUMPCAST_REDIS_CLUSTER", "", _optional_host_ports,
        "Redis Cluster seed nodes, host:port, comma separated: when set, every service uses a "
        "cluster client (STUMPCAST_REDIS_URL then gives only the credentials and options). "
        "Empty: the single Redis of STUMPCAST_REDIS_URL.")
    # -- the local stack started by `stumpcast stack` --
    run_dir: Path = _env(
        "STUMPCAST_RUN_DIR", ".run", _path,
        "Run folder of the local stack: data, logs and pids of every server.")
    cache_dir: Path = _env(
        "STUMPCAST_CACHE_DIR", "~/.cache/stumpcast", _path,
        "Where Maven puts the Kafka and Cassandra jars (outside the repository).")
    java_home: str = _env(
        "STUMPCAST_JAVA_HOME", "", str,
        "JDK 17 home for Kafka and Cassandra. Default: found on the machine.")
    kafka_version: str = _env(
        "STUMPCAST_KAFKA_VERSION", "4.3.1", str, "Apache Kafka version of the local stack.")
    cassandra_version: str = _env(
        "STUMPCAST_CASSANDRA_VERSION", "5.0.8", str,
        "Apache Cassandra version of the local stack.")
    stack_kafka_port: int = _env(
        "STUMPCAST_STACK_KAFKA_PORT", "19092", _port, "Local Kafka broker port.")
    stack_kafka_controller_port: int = _env(
        "STUMPCAST_STACK_KAFKA_CONTROLLER_PORT", "19093", _port, "Local KRaft controller port.")
    stack_cassandra_port: int = _env(
        "STUMPCAST_STACK_CASSANDRA_PORT", "19042", _port, "Local Cassandra CQL port.")
    stack_cassandra_storage_port: int = _env(
        "STUMPCAST_STACK_CASSANDRA_STORAGE_PORT", "17000", _port,
        "Local Cassandra inter-node storage port (bound to loopback).")
    stack_redis_port: int = _env(
        "STUMPCAST_STACK_REDIS_PORT", "16379", _port, "Local Redis port.")
    stack_kafka_heap: str = _env(
        "STUMPCAST_STACK_KAFKA_HEAP", "768m", str, "Kafka JVM heap (-Xmx).")
    stack_cassandra_heap: str = _env(
        "STUMPCAST_STACK_CASSANDRA_HEAP", "1024m", str, "Cassandra JVM heap (-Xmx).")
    stack_start_timeout: float = _env(
        "STUMPCAST_STACK_START_TIMEOUT", "180", _positive_float,
        "Seconds `stack up` waits for each server to become healthy.")
    stack_prometheus_port: int = _env(
        "STUMPCAST_STACK_PROMETHEUS_PORT", "19090", _port,
        "Local Prometheus port (`stack up --observe`).")
    stack_alertmanager_port: int = _env(
        "STUMPCAST_STACK_ALERTMANAGER_PORT", "19095", _port,
        "Local Alertmanager port (`stack up --observe`; its cluster port is disabled).")
    stack_observe_interval: float = _env(
        "STUMPCAST_STACK_OBSERVE_INTERVAL", "5", _positive_float,
        "Seconds between two scrapes and two rule evaluations of the local Prometheus.")
    stack_observe_timing: str = _env(
        "STUMPCAST_STACK_OBSERVE_TIMING", "standard", _choice("standard", "fast"),
        "Alert timing of the local Prometheus: standard (the rules in compose/prometheus), or "
        "fast (symptom thresholds and `for` windows divided by 12, for tests).")
    stack_cdn_a_port: int = _env(
        "STUMPCAST_STACK_CDN_A_PORT", "18101", _port,
        "Caching edge cdn-a (nginx, `stack up --edge`): HLS, the HTTP API and the page, /ws "
        "passed through.")
    stack_cdn_b_port: int = _env(
        "STUMPCAST_STACK_CDN_B_PORT", "18102", _port,
        "Caching edge cdn-b (nginx, `stack up --edge`), configured like cdn-a.")
    stack_redis_cluster_port: int = _env(
        "STUMPCAST_STACK_REDIS_CLUSTER_PORT", "16381", _port,
        "First port of the local Redis Cluster (`stack up --nodes 3`): 6 nodes on this port and "
        "the next 5, their cluster bus ports 10 above each.")
    stack_kafka_cluster_port: int = _env(
        "STUMPCAST_STACK_KAFKA_CLUSTER_PORT", "19192", _port,
        "Broker port of the local 3-broker Kafka (`stack up --nodes 3`): broker i listens on "
        "127.0.0.i at this port, its KRaft controller one above.")
    stack_lb_port: int = _env(
        "STUMPCAST_STACK_LB_PORT", "18000", _port,
        "The load balancer in front of the gateway nodes (two HAProxy processes sharing the "
        "port, `stack up --only lb,lb-2`): WebSocket and HTTP on this port, its own health at "
        "/lb/healthz.")
    stack_lb_gateways: tuple[str, ...] = _env(
        "STUMPCAST_STACK_LB_GATEWAYS", "", _optional_host_ports,
        "Gateway nodes behind the load balancer, host:port, comma separated; each is "
        "health-checked through its /readyz. Empty: the one gateway of STUMPCAST_GATEWAY_HOST "
        "and STUMPCAST_GATEWAY_PORT.")
    # -- services --
    gateway_host: str = _env(
        "STUMPCAST_GATEWAY_HOST", "127.0.0.1", str, "Gateway listen address.")
    gateway_port: int = _env(
        "STUMPCAST_GATEWAY_PORT", "18080", _port, "Gateway WebSocket and HTTP port.")
    gateway_workers: int = _env(
        "STUMPCAST_GATEWAY_WORKERS", "1", _positive_int,
        "Gateway processes sharing the port (SO_REUSEPORT); one per core.")
    gateway_send_threads: int = _env(
        "STUMPCAST_GATEWAY_SEND_THREADS", "1", _send_threads,
        "Threads of a gateway process's native send loop (1 to 4). With more than one, a "
        "fanout to many sockets is split over them with the GIL released, so one process "
        "can use several cores for its system calls; with one gateway process per core (the "
        "usual shape) 1 costs the least CPU.")
    gateway_jwt_secret: str = _env(
        "STUMPCAST_GATEWAY_JWT_SECRET", "", str,
        "HS256 secret for connection tokens. With this or the public key set, tokens are "
        "required.")
    gateway_jwt_public_key: Path = _env(
        "STUMPCAST_GATEWAY_JWT_PUBLIC_KEY", None, _path,
        "PEM file of the RS256 public key for connection tokens.")
    gateway_allowed_origins: tuple[str, ...] = _env(
        "STUMPCAST_GATEWAY_ALLOWED_ORIGINS", "*", _hosts,
        "Origins allowed to open a WebSocket, comma separated; * allows any.")
    gateway_max_subscriptions: int = _env(
        "STUMPCAST_GATEWAY_MAX_SUBSCRIPTIONS", "64", _positive_int,
        "Channel subscriptions per connection.")
    gateway_max_message_bytes: int = _env(
        "STUMPCAST_GATEWAY_MAX_MESSAGE_BYTES", "4096", _positive_int,
        "Largest client message answered; larger ones get a too_large error.")
    gateway_messages_per_second: float = _env(
        "STUMPCAST_GATEWAY_MESSAGES_PER_SECOND", "20", _positive_float,
        "Client messages per connection per second (burst: 64).")
    gateway_accepts_per_second: float = _env(
        "STUMPCAST_GATEWAY_ACCEPTS_PER_SECOND", "2000", _positive_float,
        "New connections per second per process; beyond it, 503 with Retry-After.")
    gateway_queue_bytes: int = _env(
        "STUMPCAST_GATEWAY_QUEUE_BYTES", "262144", _positive_int,
        "Bytes queued per client beyond its socket buffer before it is closed as slow.")
    gateway_panic_dir: Path = _env(
        "STUMPCAST_GATEWAY_PANIC_DIR", ".run/gateway/panic", _path,
        "Where the gateway keeps the last good scorecards for panic mode.")
    gateway_panic_flag: Path = _env(
        "STUMPCAST_GATEWAY_PANIC_FLAG", ".run/gateway/PANIC", _path,
        "While this file exists, the HTTP API serves the stored (stale) scorecards.")
    gateway_max_lag: float = _env(
        "STUMPCAST_GATEWAY_MAX_LAG", "5", _positive_float,
        "Feed lag in seconds above which /readyz fails.")
    gateway_stats_dir: Path | None = _env(
        "STUMPCAST_GATEWAY_STATS_DIR", None, _optional_path,
        "Where each gateway worker rewrites its counters twice a second (every worker's "
        "/metrics reports its siblings' from there; the gateway bench reads them). Default: a "
        "temporary folder the parent process makes for its workers.")
    gateway_admin_host: str = _env(
        "STUMPCAST_GATEWAY_ADMIN_HOST", "127.0.0.1", str,
        "Gateway admin listen address (/metrics, /healthz, /readyz).")
    gateway_admin_port: int = _env(
        "STUMPCAST_GATEWAY_ADMIN_PORT", "18082", _port,
        "Gateway admin port: /metrics (never on the public port), /healthz and /readyz.")
    gateway_jwt_audience: str = _env(
        "STUMPCAST_GATEWAY_JWT_AUDIENCE", "stumpcast-gateway", str,
        "The aud claim every connection token must carry (with auth on).")
    gateway_jwt_issuer: str = _env(
        "STUMPCAST_GATEWAY_JWT_ISSUER", "stumpcast", str,
        "The iss claim every connection token must carry (with auth on).")
    gateway_connections_per_ip: int = _env(
        "STUMPCAST_GATEWAY_CONNECTIONS_PER_IP", "1000", _positive_int,
        "Open connections per client address per process; beyond it, 429. Behind a proxy "
        "every client shares its address: raise it there.")
    gateway_accepts_per_ip: float = _env(
        "STUMPCAST_GATEWAY_ACCEPTS_PER_IP", "50", _positive_float,
        "New connections per second per client address per process (burst: twice that); "
        "beyond it, 429 with Retry-After.")
    streams_metrics_port: int = _env(
        "STUMPCAST_STREAMS_METRICS_PORT", "18090", _port,
        "Streams worker /metrics, /healthz and /readyz port.")
    streams_metrics_host: str = _env(
        "STUMPCAST_STREAMS_METRICS_HOST", "127.0.0.1", str,
        "Streams worker listen address (0.0.0.0 in a container).")
    streams_allowed_sources: tuple[str, ...] = _env(
        "STUMPCAST_STREAMS_ALLOWED_SOURCES", "cricsheet,scorer:*", _hosts,
        "Event sources the streams worker accepts, comma separated; '*' is a wildcard "
        "(fnmatch). Others go to the dead-letter topic.")
    streams_gap_timeout: float = _env(
        "STUMPCAST_STREAMS_GAP_TIMEOUT", "5", _positive_float,
        "Seconds the streams worker holds events behind a sequence gap before it looks for "
        "the missing ones in the event store (again each time the gap's age doubles, at most "
        "a minute apart). A gap is never dead-lettered: the held events wait for the producer.")
    streams_relay_interval: float = _env(
        "STUMPCAST_STREAMS_RELAY_INTERVAL", "1", _positive_float,
        "Least seconds between two notification transactions of one match.events partition: "
        "a sparse notification is published at once, a busy partition batches (each "
        "transaction costs the broker and the worker CPU that the view commits need).")
    streams_instance_id: str = _env(
        "STUMPCAST_STREAMS_INSTANCE_ID", "", str,
        "Static Kafka group membership id of this streams worker (unique per worker, stable "
        "across restarts): a restarted worker takes its partitions back without waiting for "
        "a rebalance. Empty: dynamic membership.")
    streams_store_backlog: int = _env(
        "STUMPCAST_STREAMS_STORE_BACKLOG", "20000", _positive_int,
        "Events the streams worker keeps in memory while the event store (Cassandra) is "
        "down; when full, consumption pauses until the store catches up.")
    ingest_host: str = _env(
        "STUMPCAST_INGEST_HOST", "127.0.0.1", str, "Scorer ingest API listen address.")
    ingest_port: int = _env(
        "STUMPCAST_INGEST_PORT", "18096", _port,
        "Scorer ingest API (POST /v1/matches/{id}/events with a scorer's bearer token), "
        "/metrics, /healthz and /readyz.")
    media_http_port: int = _env(
        "STUMPCAST_MEDIA_HTTP_PORT", "18081", _port,
        "Media worker origin: HLS, /metrics, /healthz and /readyz.")
    media_http_host: str = _env(
        "STUMPCAST_MEDIA_HTTP_HOST", "127.0.0.1", str,
        "Media worker origin listen address (0.0.0.0 in a container).")
    media_dir: Path = _env(
        "STUMPCAST_MEDIA_DIR", ".run/media", _path,
        "Media worker folder: origin/ (published HLS, state.json) and staging/ (ffmpeg output).")
    media_ladder: str = _env(
        "STUMPCAST_MEDIA_LADDER", "720p,480p,360p", str,
        "ABR ladder rungs, comma separated, each optionally name:kbps (e.g. 720p:2000). "
        "Default tops at 720p: 2 cores shared with the stack; add 1080p where cores allow "
        "(docs/media.md, Ladder).")
    media_preset: str = _env(
        "STUMPCAST_MEDIA_PRESET", "ultrafast", str,
        "x264 preset of the ladder's first launch (ultrafast: 2.6x real time for the "
        "default 720p25 ladder on 2 shared cores, veryfast 1.5x; docs/media.md).")
    media_fps: int = _env(
        "STUMPCAST_MEDIA_FPS", "25", _positive_int, "Ladder frame rate.")
    media_segment_seconds: int = _env(
        "STUMPCAST_MEDIA_SEGMENT_SECONDS", "2", _positive_int,
        "Segment (and GOP) duration in seconds; also the playlists' target duration.")
    media_window_segments: int = _env(
        "STUMPCAST_MEDIA_WINDOW_SEGMENTS", "450", _positive_int,
        "Segments kept in each live playlist (450 x 2 s = 15 min, Apple authoring 8.12).")
    media_rtmp_port: int = _env(
        "STUMPCAST_MEDIA_RTMP_PORT", "19350", _port, "RTMP ingest port (worker listens).")
    media_srt_port: int = _env(
        "STUMPCAST_MEDIA_SRT_PORT", "19351", _port, "SRT ingest port (worker listens).")
    media_pathways: tuple[tuple[str, str], ...] = _env(
        "STUMPCAST_MEDIA_PATHWAYS", "", _pathways,
        "Content steering: the CDNs the master playlist lists, id=base URL, comma separated "
        "(e.g. cdn-a=http://127.0.0.1:18101,cdn-b=http://127.0.0.1:18102); the first is the "
        "pathway players start on. Empty: no steering, relative URIs.")
    media_steering_uri: str = _env(
        "STUMPCAST_MEDIA_STEERING_URI", "", str,
        "SERVER-URI of EXT-X-CONTENT-STEERING when pathways are set. Default: the local "
        "steering server, http://127.0.0.1:<STUMPCAST_STEERING_PORT>/v1/steering.")
    media_hls: str = _env(
        "STUMPCAST_MEDIA_HLS", "regular", _choice("regular", "low-latency"),
        "regular: MPEG-TS segments; low-latency: fMP4 (CMAF) segments with partial segments, "
        "blocking playlist reload and delta updates (LL-HLS; players without LL-HLS play the "
        "same playlists as regular HLS).")
    media_part_target: float = _env(
        "STUMPCAST_MEDIA_PART_TARGET", "0.4", _part_target,
        "LL-HLS part duration in seconds, rounded to whole frames that divide the segment.")
    media_ll_max_blocked: int = _env(
        "STUMPCAST_MEDIA_LL_MAX_BLOCKED", "2000", _positive_int,
        "LL-HLS: blocking playlist requests the origin holds at once; more are answered 503 "
        "with Retry-After.")
    steering_port: int = _env(
        "STUMPCAST_STEERING_PORT", "18103", _port,
        "Steering server (`stumpcast steering serve`): steering manifests, /metrics, /healthz "
        "and /readyz.")
    steering_ttl: int = _env(
        "STUMPCAST_STEERING_TTL", "10", _positive_int,
        "Seconds a player keeps a steering manifest before asking again (its TTL).")
    steering_hold_down: float = _env(
        "STUMPCAST_STEERING_HOLD_DOWN", "60", _positive_float,
        "Seconds a region stays off a CDN it was moved away from before a share of its "
        "players is sent back to probe it (doubled after each failed probe, up to 8x).")
    steering_ramp_step: float = _env(
        "STUMPCAST_STEERING_RAMP_STEP", "20", _positive_float,
        "Seconds per step of a region's gradual return to a recovered CDN (25%, 50%, 100% of "
        "its players).")
    analytics_metrics_port: int = _env(
        "STUMPCAST_ANALYTICS_METRICS_PORT", "18093", _port,
        "Analytics worker /metrics, /healthz and /readyz port.")
    analytics_metrics_host: str = _env(
        "STUMPCAST_ANALYTICS_METRICS_HOST", "127.0.0.1", str,
        "Analytics worker listen address (0.0.0.0 in a container).")
    analytics_mode: str = _env(
        "STUMPCAST_ANALYTICS_MODE", "exact", _choice("exact", "hll"),
        "Distinct counting: exact (sets) or hll (HyperLogLog, ~0.8% error, bounded memory).")
    heartbeat_interval: int = _env(
        "STUMPCAST_HEARTBEAT_INTERVAL", "10", _positive_int,
        "Seconds between a player's heartbeats; concurrency counts the last 2 intervals.")
    notifier_metrics_port: int = _env(
        "STUMPCAST_NOTIFIER_METRICS_PORT", "18094", _port,
        "Notifier (webhook delivery) /metrics, /healthz and /readyz port.")
    notifier_metrics_host: str = _env(
        "STUMPCAST_NOTIFIER_METRICS_HOST", "127.0.0.1", str,
        "Notifier listen address (0.0.0.0 in a container).")
    ops_host: str = _env(
        "STUMPCAST_OPS_HOST", "127.0.0.1", str,
        "Listen address of `stumpcast ops serve` (the local stack's always binds loopback).")
    ops_port: int = _env(
        "STUMPCAST_OPS_PORT", "18095", _port,
        "Admin port of the operations server (`stack up --observe`): the /ops page, its "
        "Prometheus and Alertmanager proxy, and /metrics of what it measures from outside "
        "the services (consumer lag, view staleness, viewers per CDN).")
    webhook_max_attempts: int = _env(
        "STUMPCAST_WEBHOOK_MAX_ATTEMPTS", "6", _positive_int,
        "Attempts per webhook delivery before it is dead-lettered.")
    webhook_allow_hosts: tuple[str, ...] = _env(
        "STUMPCAST_WEBHOOK_ALLOW_HOSTS", "", _list,
        "Addresses or networks (CIDR), comma separated, that webhooks may reach although they "
        "are not public (loopback, private, link-local). Default: none; every other target is "
        "checked after DNS resolution.")
    webhook_queue: int = _env(
        "STUMPCAST_WEBHOOK_QUEUE", "10000", _positive_int,
        "Notifications waiting per webhook; beyond it they are dead-lettered (queue full).")
    log_level: str = _env(
        "STUMPCAST_LOG_LEVEL", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _env(
        "STUMPCAST_LOG_FORMAT", "json", _choice("json", "text"),
        "Structured JSON lines, or text for a terminal.")
    event_loop: str = _env(
        "STUMPCAST_EVENT_LOOP", "uvloop", lambda raw: _choice("uvloop", "asyncio")(raw.lower()),
        "Event loop of the gateway workers, the streams worker and the bench load clients: "
        "uvloop (when installed) or asyncio.")
    lag_log_dir: Path | None = _env(
        "STUMPCAST_LAG_LOG_DIR", None, _optional_path,
        "Diagnostics: a folder where the gateway workers and the gateway bench log each event "
        "loop stall over 20 ms (wall time, overshoot, CPU and run-queue wait). Default: off.")
    # -- degradation (feature flags: schemas/flags.py, stumpcast flags controller) --
    degrade_conflate_seconds: float = _env(
        "STUMPCAST_DEGRADE_CONFLATE_SECONDS", "5", _positive_float,
        "Degradation level 2: the gateway sends at most one score snapshot per match this "
        "often (latest wins) instead of every update.")
    degrade_heartbeat_sample: int = _env(
        "STUMPCAST_DEGRADE_HEARTBEAT_SAMPLE", "4", _positive_int,
        "Degradation level >= 1: the gateway forwards the heartbeats of 1 in N sessions (a "
        "sticky sample) to analytics.")
    # -- data --
    cricsheet_dir: Path = _env(
        "STUMPCAST_CRICSHEET_DIR", "../shared/data/cricsheet", _repo_path,
        "Folder of Cricsheet JSON matches (the demo, the benchmarks, the tests); a relative "
        "path is taken from the repository's folder.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            meta = f.metadata
            raw = env.get(meta["env"], meta["default"])
            if raw is None:
                values[f.name] = None
                continue
            try:
                values[f.name] = meta["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{meta['env']}={raw!r}: {exc}") from None
        # Defaults that follow the local stack's ports.
        if values["kafka_bootstrap"] is None:
            values["kafka_bootstrap"] = (f"127.0.0.1:{values['stack_kafka_port']}",)
        if values["redis_url"] is None:
            values["redis_url"] = f"redis://127.0.0.1:{values['stack_redis_port']}/0"
        if values["cassandra_port"] is None:
            values["cassandra_port"] = values["stack_cassandra_port"]
        if values["secrets_dir"] is None:
            values["secrets_dir"] = values["run_dir"] / "secrets"
        if values["scorer_registry"] is None:
            values["scorer_registry"] = values["secrets_dir"] / "scorers.json"
        return cls(**values)

    @property
    def kafka_bootstrap_str(self) -> str:
        return ",".join(self.kafka_bootstrap)

    @property
    def steering_uri(self) -> str:
        """The steering manifest URI the master playlist names."""
        return self.media_steering_uri or f"http://127.0.0.1:{self.steering_port}/v1/steering"


def documented() -> list[tuple[str, str | None, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)]


def variable_names() -> frozenset[str]:
    return frozenset(f.metadata["env"] for f in fields(Settings))
