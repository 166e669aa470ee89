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

from schemas.settings import Settings
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
def cassandra_session(settings: Settings, auth: tuple[str, str] | None,
                      timeout: float) -> Iterator[Any]:
    """A connected driver session logged in with ``auth`` (``runtime.cassandra``); the cluster
    object is shut down on exit."""
    from runtime.cassandra import cluster_with

    cluster = cluster_with(settings, auth, timeout)
    try:
        with _driver_quiet(logging.ERROR):  # "Downgrading core protocol version" on connect
            session = cluster.connect()
        yield session
    finally:
        cluster.shutdown()


def cassandra_ready(settings: Settings, auth: tuple[str, str] | None,
                    timeout: float = 5.0) -> bool:
    """``SELECT release_version FROM system.local`` answered (infra.md §2.4, readiness), or
    the login refused: with ``PasswordAuthenticator`` a server answers CQL before its
    superuser exists (and before `stack up` has made ours), and that refusal is an answer."""
    hosts, port = settings.cassandra_hosts, settings.cassandra_port
    if not any(is_open(port, host) for host in hosts):
        return False
    try:
        with _driver_quiet(), cassandra_session(settings, auth, timeout) as session:
            row = session.execute("SELECT release_version FROM system.local").one()
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the server is not ready
        return login_refused(exc)
    return row is not None


def login_refused(exc: BaseException) -> bool:
    """The driver's NoHostAvailable carrying an AuthenticationFailed (or a host's answer
    that it needs credentials)."""
    errors = getattr(exc, "errors", None) or {}
    return any("AuthenticationFailed" in type(e).__name__ or "Bad credentials" in str(e)
               or "requires authentication" in str(e) for e in errors.values())


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


def redis_ready(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> bool:
    """PING answered with PONG (as the ACL user ``auth``: the stack's Redis refuses a client
    without credentials)."""
    import redis

    from runtime.redisconn import connect

    client = connect(url, auth, socket_timeout=timeout, socket_connect_timeout=timeout)
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
