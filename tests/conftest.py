"""Shared fixtures: the settings, and the real stack for tests marked ``stack``.

* ``settings``        Settings.from_env(), no check.
* ``stack``           the same settings, after checking that Kafka, Cassandra and Redis (where
                      the settings point: the local stack by default) answer a real request.
* ``kafka_stack``, ``cassandra_stack``, ``redis_stack``: the same check for one server.
* ``nodes3``          a `stack up --nodes 3` of the session's own (``tests/multinode.py``).

Kafka clients of the tests connect as the admin principal (``tests.kafka_access``); Redis and
Cassandra clients as the ``admin`` user and role (``runtime.redisconn``, ``runtime.cassandra``).

When a server is not reachable the test is skipped with the reason and the command to run, except
under CI (``CI=true``), where it fails: in CI the real run is never optional (STYLE.md, 11).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from runtime import cassandra, redisconn
from schemas.settings import Settings

if TYPE_CHECKING:
    from tests.multinode import MultiNode

_checked: dict[str, str | None] = {}   # server -> None if reachable, else why not


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _probe(settings: Settings, server: str) -> str | None:
    from stumpcast.stack import probes

    checks: dict[str, Callable[[], bool]] = {
        "kafka": lambda: _kafka_ready(settings),
        "cassandra": lambda: probes.cassandra_ready(settings, _admin(cassandra, settings), 5.0),
        # the first node of a Redis Cluster when the settings name one (`stack up --nodes 3`)
        "redis": lambda: probes.redis_ready(_redis_url(settings), 2.0,
                                            _admin(redisconn, settings)),
    }
    where = {"kafka": settings.kafka_bootstrap_str,
             "cassandra": f"{','.join(settings.cassandra_hosts)}:{settings.cassandra_port}",
             "redis": _redis_url(settings)}[server]
    return None if checks[server]() else f"{server} not reachable at {where}"


def _redis_url(settings: Settings) -> str:
    if settings.redis_cluster:
        return f"redis://{settings.redis_cluster[0]}/0"
    return settings.redis_url


def _admin(factory: Any, settings: Settings) -> tuple[str, str] | None:
    """The admin credentials of ``factory`` (runtime.redisconn or runtime.cassandra); None
    when the run folder has none yet (the probe then fails, or sees a refused login)."""
    from runtime.secrets import SecretMissing

    try:
        auth: tuple[str, str] | None = factory.credentials(settings, "admin")
        return auth
    except SecretMissing:
        return None


def _kafka_ready(settings: Settings) -> bool:
    from runtime.secrets import SecretMissing
    from stumpcast.stack import probes
    from tests.kafka_access import admin_config

    try:
        return probes.kafka_ready(admin_config(settings), 5.0)
    except SecretMissing:
        return False


def require(settings: Settings, *servers: str) -> Settings:
    """Skip (or fail under CI) unless every one of ``servers`` answers."""
    for server in servers:
        if server not in _checked:
            _checked[server] = _probe(settings, server)
    missing = [why for s in servers if (why := _checked[s])]
    if missing:
        reason = "; ".join(missing) + " (start it with `stumpcast stack up`)"
        if _in_ci():
            pytest.fail(f"CI=true and the stack is not reachable: {reason}", pytrace=False)
        pytest.skip(reason)
    return settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def stack(settings: Settings) -> Settings:
    return require(settings, "kafka", "cassandra", "redis")


@pytest.fixture
def kafka_stack(settings: Settings) -> Settings:
    return require(settings, "kafka")


@pytest.fixture
def cassandra_stack(settings: Settings) -> Settings:
    return require(settings, "cassandra")


@pytest.fixture
def redis_stack(settings: Settings) -> Settings:
    return require(settings, "redis")


# Tests that stop and restart the stack's own servers run first, on a stack no other test has
# loaded yet: after the rest of the suite (hundreds of test matches, some of them deliberately
# left with gaps that a worker holds) the outage test's fresh worker did not show its first
# views within 150 s in two CI rehearsals, while it passed alone and right after the moves
# test. Running it first also keeps its outages from touching any other test.
_FIRST = ("tests/streams/test_pipeline_outages.py",)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # The multi-node tests last: their shared nodes (``nodes3``) stop when the session ends.
    items.sort(key=lambda item: (not item.nodeid.startswith(_FIRST),
                                 "nodes3" in getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session")
def nodes3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNode]:
    """`stack up --nodes 3` once for the session (``tests/multinode.py``); stopped at the end.
    A stack that does not come up is a failure (these tests are marked ``stack``)."""
    from tests.multinode import MultiNode

    nodes = MultiNode(tmp_path_factory.mktemp("nodes3") / "run")
    try:
        nodes.up()
    except BaseException:
        nodes.down()
        raise
    yield nodes
    nodes.down()
