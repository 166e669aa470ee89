"""A Redis Cluster of the stack's launcher (3 masters + 3 replicas) in a run folder of its own,
for the tests that need one: ports from STUMPCAST_STACK_REDIS_CLUSTER_PORT, the single node's
ACL users, stopped by the caller (``stop``). Forming it takes ~5 s."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from schemas.settings import Settings
from stumpcast.stack import control
from stumpcast.stack.redis_cluster import NODE_TYPES, seeds

NODES = list(NODE_TYPES)


def free_block(size: int) -> int:
    """A first port with ``size`` free ports from it (6 nodes, their buses 10 above): not the
    settings' own, which a developer's `stack up --nodes 3` may hold."""
    from stumpcast.stack.ports import is_free
    from tests.replicas import free_port

    while True:
        base = free_port()
        if base + size < 65536 and all(is_free(base + i) for i in range(size)):
            return base


def start(run_dir: Path) -> Settings:
    """The cluster up; the settings that name it (``redis_cluster``) and its secrets."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    base = Settings.from_env()
    settings = dataclasses.replace(base, run_dir=run_dir, secrets_dir=run_dir / "secrets",
                                   scorer_registry=run_dir / "secrets" / "scorers.json",
                                   stack_redis_cluster_port=free_block(16))
    settings = dataclasses.replace(settings, redis_cluster=seeds(settings))
    try:
        control.up(settings, NODES, say=lambda _: None)
    except BaseException:
        stop(settings)
        raise
    return settings


def stop(settings: Settings) -> None:
    control.down(settings, NODES)
