"""Redis Cluster clients, for settings that name a cluster (``STUMPCAST_REDIS_CLUSTER``).

The seed nodes come from ``Settings.redis_cluster``; the user name and password, when the
single-node URL has them, from ``Settings.redis_url`` (one place for credentials whichever the
topology). A cluster has only database 0, so a URL naming another database is refused rather
than silently ignored.

What the callers can count on (redis-py cluster clients, cluster.md §5.3-5.4):

* Each command goes to the master of its key's slot; every key of one match shares a hash tag
  (``schemas.topology.match_tag``), so a match's multi-key commands and its view-commit script
  run on one node.
* After a master dies, its slots are served again once a replica is promoted (about
  ``cluster-node-timeout`` + 1-2 s); the client refreshes its slot map on MOVED or on a refused
  connection and retries. ``retry`` below gives it a budget longer than that failover, so a
  command waits through it rather than failing while a replica takes over.
* A promoted replica has an empty script cache: ``register_script`` objects reload their
  script on NOSCRIPT by themselves (outside pipelines).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from schemas.settings import Settings

# Attempts x the backoff's cap: long enough for a replica to take over a dead master's slots
# (cluster-node-timeout 5000 + election, ~6-7 s) with room to spare on a loaded machine.
RETRY_ATTEMPTS = 20
RETRY_CAP_S = 1.0


class ClusterSettingsError(ValueError):
    """The settings name a cluster in a way a cluster client cannot honour."""


def is_cluster(settings: Settings) -> bool:
    return bool(settings.redis_cluster)


def credentials(settings: Settings) -> dict[str, str]:
    """``username``/``password`` of ``STUMPCAST_REDIS_URL``, if it has them."""
    parts = urlsplit(settings.redis_url)
    found: dict[str, str] = {}
    if parts.username:
        found["username"] = unquote(parts.username)
    if parts.password:
        found["password"] = unquote(parts.password)
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ClusterSettingsError(
            f"STUMPCAST_REDIS_URL names database {db}; a Redis Cluster has only database 0")
    return found


def _seeds(settings: Settings) -> list[tuple[str, int]]:
    nodes = []
    for item in settings.redis_cluster:
        host, _, port = item.rpartition(":")
        nodes.append((host, int(port)))
    return nodes


def _retry(asyncio: bool) -> Any:
    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import ExponentialBackoff

        return AsyncRetry(ExponentialBackoff(cap=RETRY_CAP_S, base=0.05), RETRY_ATTEMPTS)
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return Retry(ExponentialBackoff(cap=RETRY_CAP_S, base=0.05), RETRY_ATTEMPTS)


def sync_cluster(settings: Settings, **options: Any) -> Any:
    """A ``redis.cluster.RedisCluster`` on the settings' seed nodes."""
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in _seeds(settings)]
    return RedisCluster(startup_nodes=nodes, retry=_retry(False),
                        **{**credentials(settings), **options})


def async_cluster(settings: Settings, **options: Any) -> Any:
    """A ``redis.asyncio.cluster.RedisCluster`` on the settings' seed nodes."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in _seeds(settings)]
    return RedisCluster(startup_nodes=nodes, retry=_retry(True),
                        **{**credentials(settings), **options})
