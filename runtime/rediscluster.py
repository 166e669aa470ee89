"""Redis Cluster clients, for settings that name a cluster (``STUMPCAST_REDIS_CLUSTER``).

Built only through ``runtime.redisconn`` (``sync_redis``/``async_redis``/``connect``), as the
caller's ACL user. What the callers can count on (redis-py cluster clients, cluster.md §5.3-5.4):

* Each command goes to the master of its key's slot; every key of one match shares a hash tag
  (``schemas.topology.match_tag``), so a match's multi-key commands and its view-commit script
  run on one node.
* After a master dies, its slots are served again once a replica is promoted (about
  ``cluster-node-timeout`` + 1-2 s); the client refreshes its slot map on MOVED or a refused
  connection and retries. ``RETRY_*`` give it a budget longer than that failover, so a command
  waits through it rather than failing while a replica takes over (measured: a commit sent
  right after a master's SIGKILL was applied 9.6 s later with no error,
  tests/stumpcast/stack/test_redis_cluster.py).
* A promoted replica has an empty script cache: ``register_script`` objects reload their
  script on NOSCRIPT by themselves (outside pipelines).
* A cluster has only database 0: ``db`` is not passed on.
"""

from __future__ import annotations

from typing import Any

# Attempts x the backoff's cap: long enough for a replica to take over a dead master's slots
# (cluster-node-timeout 5000 + election, ~6-7 s) with room to spare on a loaded machine.
RETRY_ATTEMPTS = 20
RETRY_CAP_S = 1.0


def seed_nodes(cluster: tuple[str, ...]) -> list[tuple[str, int]]:
    nodes = []
    for item in cluster:
        host, _, port = item.rpartition(":")
        nodes.append((host, int(port)))
    return nodes


def _retry(asyncio: bool) -> Any:
    from redis.backoff import ExponentialBackoff

    backoff = ExponentialBackoff(cap=RETRY_CAP_S, base=0.05)
    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(backoff, RETRY_ATTEMPTS)
    from redis.retry import Retry

    return Retry(backoff, RETRY_ATTEMPTS)


def cluster_client(cluster: tuple[str, ...], auth: tuple[str, str] | None, *,
                   asyncio: bool = False, **kwargs: Any) -> Any:
    """A redis-py cluster client (asyncio or not) of the seed nodes ``cluster``."""
    if asyncio:
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        factory: Any = AsyncCluster
        nodes: list[Any] = [AsyncNode(h, p) for h, p in seed_nodes(cluster)]
    else:
        from redis.cluster import ClusterNode, RedisCluster

        factory = RedisCluster
        nodes = [ClusterNode(h, p) for h, p in seed_nodes(cluster)]
    kwargs.pop("db", None)
    # One connection per node is the cluster client's own business (the gateway's reader asks
    # a single client for one; a cluster client has one pool per node).
    kwargs.pop("single_connection_client", None)
    if auth is not None:
        kwargs.update(username=auth[0], password=auth[1])
    return factory(startup_nodes=nodes, retry=_retry(asyncio), **kwargs)
