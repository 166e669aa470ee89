"""Real requests that prove a server is ready: a Kafka metadata request, a CQL query, a PING,
an HTTP readiness endpoint (Prometheus, Alertmanager, the operations server).

An open port is not enough (Kafka accepts connections before it has a controller, Cassandra
opens its CQL port late but the JVM listens on the storage port early), so each probe asks the
server something it can only answer when it works. A TCP connect runs first to keep a stopped
server's probe quick and quiet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stumpcast.stack.ports import is_open


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return host, int(port)


def any_open(bootstrap: Sequence[str]) -> bool:
    return any(is_open(port, host) for host, port in map(_host_port, bootstrap))


def kafka_admin(client: Mapping[str, Any], timeout: float) -> Any:
    """An AdminClient with ``client``'s settings (``runtime.kafka.client_config``)."""
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("stumpcast.stack.librdkafka")
    quiet.setLevel(logging.CRITICAL)  # connect-refused chatter while a broker boots
    config: dict[str, Any] = {
        **client,
        "socket.timeout.ms": int(timeout * 1000),
        "socket.connection.setup.timeout.ms": int(timeout * 1000),
        "logger": quiet,
    }
    return AdminClient(config)


def kafka_ready(client: Mapping[str, Any], timeout: float = 5.0) -> bool:
    """A metadata request answered with at least one broker."""
    if not any_open(str(client["bootstrap.servers"]).split(",")):
        return False
    from confluent_kafka import KafkaException

    try:
        meta = kafka_admin(client, timeout).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(meta.brokers)


@contextlib.contextmanager
def cassandra_session(hosts: Sequence[str], port: int, timeout: float) -> Iterator[Any]:
    """A connected driver session; the cluster object is shut down on exit."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=max(timeout, 10.0))
    cluster = Cluster(contact_points=list(hosts), port=port, connect_timeout=timeout,
                      control_connection_timeout=timeout,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        with _driver_quiet(logging.ERROR):  # "Downgrading core protocol version" on connect
            session = cluster.connect()
        yield session
    finally:
        cluster.shutdown()


def cassandra_ready(hosts: Sequence[str], port: int, timeout: float = 5.0) -> bool:
    """``SELECT release_version FROM system.local`` answered (infra.md §2.4, readiness)."""
    if not any(is_open(port, host) for host in hosts):
        return False
    try:
        with _driver_quiet(), cassandra_session(hosts, port, timeout) as session:
            row = session.execute("SELECT release_version FROM system.local").one()
    except Exception:  # noqa: BLE001 - whatever the driver raises, the server is not ready
        return False
    return row is not None


@contextlib.contextmanager
def _driver_quiet(level: int = logging.CRITICAL) -> Iterator[None]:
    """The driver logs a WARNING per refused connection while Cassandra boots, and one per
    protocol downgrade on every connect."""
    log = logging.getLogger("cassandra")
    before = log.level
    log.setLevel(max(level, before))
    try:
        yield
    finally:
        log.setLevel(before)


def redis_ready(url: str, timeout: float = 2.0) -> bool:
    """PING answered with PONG."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def http_ready(url: str, timeout: float = 2.0) -> bool:
    """A GET answered with 200 (Prometheus' and Alertmanager's ``/-/ready``, ``/readyz``)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
