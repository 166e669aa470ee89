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


def start(run_dir: Path) -> Settings:
    """The cluster up; the settings that name it (``redis_cluster``) and its secrets."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    base = Settings.from_env()
    settings = dataclasses.replace(base, run_dir=run_dir, secrets_dir=run_dir / "secrets",
                                   scorer_registry=run_dir / "secrets" / "scorers.json")
    settings = dataclasses.replace(settings, redis_cluster=seeds(settings))
    try:
        control.up(settings, NODES, say=lambda _: None)
    except BaseException:
        stop(settings)
        raise
    return settings


def stop(settings: Settings) -> None:
    control.down(settings, NODES)
