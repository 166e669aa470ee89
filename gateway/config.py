"""The gateway's configuration: ``GatewayConfig``, and how ``Settings`` make one.

Kept apart from the server shell so the shell stays about connections; ``gateway.server``
re-exports both names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.auth import AuthConfig
from gateway.hub import Hub
from gateway.limits import Limits
from runtime import redisconn
from runtime.kafka import client_config
from runtime.secrets import SecretMissing, gateway_session_key_path, read_secret
from schemas.access import Principal
from schemas.store_access import RedisUser

log = logging.getLogger("stumpcast.gateway")


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 18080
    redis_url: str = "redis://127.0.0.1:16379/0"
    redis_auth: tuple[str, str] | None = None  # runtime.redisconn.credentials(s, "gateway")
    limits: Limits = field(default_factory=Limits)
    auth: AuthConfig = field(default_factory=AuthConfig)
    panic_dir: Path = Path(".run/gateway/panic")
    panic_flag: Path | None = Path(".run/gateway/PANIC")
    max_lag: float = 5.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0  # unanswered this long after a ping: the peer is gone
    socket_send_buffer: int = 0       # 0: kernel default (autotuned)
    send_threads: int = 1             # threads of the native send loop (gateway.sendall)
    hub: Callable[[Limits], Hub] = Hub  # the fanout; the bench passes its baselines here
    worker: str = "0"
    kafka: Mapping[str, Any] | None = None  # heartbeats' producer settings; None: refused
    tame_gc: bool = False             # freeze survivors, full collections rarely (_tame_gc); off
                                      # in tests, which share one process with everything else
    stats_path: Path | None = None    # this worker's counters, rewritten twice a second (workers
                                      # read each other's for /metrics; the bench reads them)
    admin_port: int | None = None     # /metrics /healthz /readyz for operators; None: not served
    admin_host: str = "127.0.0.1"
    session_key: bytes | None = None  # HMAC key of issued session ids (shared by the workers);
                                      # None: a random one for this process
    conflate_seconds: float = 5.0     # degradation level 2: one score snapshot per match per N s
    heartbeat_sample: int = 4         # degradation level >= 1: 1 in N sessions' beats forwarded
    redis_cluster: tuple[str, ...] = ()  # Redis Cluster seed nodes; (): the one of redis_url



def config_from_settings(settings: Any, **overrides: Any) -> GatewayConfig:
    """The gateway's configuration from ``schemas.settings.Settings`` (built in ``main``)."""
    key = settings.gateway_jwt_public_key
    limits = Limits(max_message_bytes=settings.gateway_max_message_bytes,
                    max_subscriptions=settings.gateway_max_subscriptions,
                    messages_per_second=settings.gateway_messages_per_second,
                    accepts_per_second=settings.gateway_accepts_per_second,
                    accept_burst=int(settings.gateway_accepts_per_second * 2),
                    queue_bytes=settings.gateway_queue_bytes,
                    connections_per_ip=settings.gateway_connections_per_ip,
                    accepts_per_ip=settings.gateway_accepts_per_ip,
                    accept_burst_per_ip=int(settings.gateway_accepts_per_ip * 2),
                    heartbeat_min_gap=0.8 * settings.heartbeat_interval)
    auth = AuthConfig(hs256_secret=settings.gateway_jwt_secret or None,
                      rs256_public_key=key.read_text() if key else None,
                      allowed_origins=settings.gateway_allowed_origins,
                      audience=settings.gateway_jwt_audience, issuer=settings.gateway_jwt_issuer)
    values: dict[str, Any] = dict(
        host=settings.gateway_host, port=settings.gateway_port, redis_url=settings.redis_url,
        redis_auth=redisconn.credentials(settings, RedisUser.GATEWAY), limits=limits,
        auth=auth, panic_dir=settings.gateway_panic_dir,
        panic_flag=settings.gateway_panic_flag, max_lag=settings.gateway_max_lag,
        kafka=_heartbeat_kafka(settings), admin_port=settings.gateway_admin_port,
        send_threads=settings.gateway_send_threads,
        admin_host=settings.gateway_admin_host, session_key=_session_key(settings),
        conflate_seconds=settings.degrade_conflate_seconds,
        heartbeat_sample=settings.degrade_heartbeat_sample,
        redis_cluster=settings.redis_cluster)
    values.update(overrides)
    return GatewayConfig(**values)


def _heartbeat_kafka(settings: Any) -> dict[str, Any] | None:
    """The gateway principal's Kafka settings; without its password heartbeats are refused
    (with a clear error to the client) rather than the gateway not starting."""
    try:
        return client_config(settings, Principal.GATEWAY)
    except SecretMissing as exc:
        log.warning("heartbeats off: no Kafka credentials", extra={"error": str(exc)})
        return None


def _session_key(settings: Any) -> bytes | None:
    """Shared by every worker, so a session id survives a reconnect to another worker."""
    try:
        return read_secret(gateway_session_key_path(settings.secrets_dir), "session key")
    except SecretMissing:
        return None
