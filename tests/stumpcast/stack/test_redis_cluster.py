"""Redis Cluster (`stack up --nodes 3`'s Redis): the launcher forms 3 masters + 3 replicas with
the single node's ACL users, and the view commit and the ingest claim run on it through the
client factory (``runtime.redisconn``) as the services' own users.

The six nodes are the session's `stack up --nodes 3` (the ``nodes3`` fixture, shared with the
other multi-node tests); the test that kills a master brings it back.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.redisconn import connect, credentials, sync_redis
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import RedisKeys
from schemas.viewcommit import Position, Status, ViewCommitter, ViewWrite
from stumpcast.stack import control
from stumpcast.stack.procs import ProcRecord
from stumpcast.stack.redis_cluster import NODE_TYPES, cluster_ok, form, info
from tests.multinode import MultiNode

pytestmark = [pytest.mark.stack]
NODES = list(NODE_TYPES)


@pytest.fixture(scope="module")
def cluster(nodes3: MultiNode) -> Settings:
    return nodes3.settings


@pytest.fixture
def client(cluster: Settings) -> Iterator[Any]:
    """The streams worker's own user: what it may do on one node it may do on the cluster."""
    r = sync_redis(cluster, RedisUser.STREAMS, socket_timeout=5)
    yield r
    r.close()


@pytest.fixture
def admin(cluster: Settings) -> Iterator[Any]:
    r = sync_redis(cluster, RedisUser.ADMIN, socket_timeout=5)
    yield r
    r.close()


def roles(settings: Settings) -> dict[str, str]:
    """node name -> "master" | "slave", from each node's own INFO replication."""
    found = {}
    for i, name in enumerate(NODES):
        port = settings.stack_redis_cluster_port + i
        r = connect(f"redis://127.0.0.1:{port}/0", credentials(settings, RedisUser.ADMIN),
                    socket_timeout=2)
        found[name] = r.info("replication")["role"]
        r.close()
    return found


def wait_replicated(settings: Settings, port: int, timeout: float = 10.0) -> None:
    """Until the master on ``port`` has a replica at its replication offset. Redis replicates
    asynchronously: a write acknowledged just before the master dies may never reach the
    replica that takes over (the streams worker then re-commits from the event store)."""
    r = connect(f"redis://127.0.0.1:{port}/0", credentials(settings, RedisUser.ADMIN),
                socket_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            rep = r.info("replication")
            offsets = [int(v["offset"]) for k, v in rep.items()
                       if k.startswith("slave") and isinstance(v, dict)]
            if offsets and max(offsets) >= int(rep["master_repl_offset"]):
                return
            assert time.monotonic() < deadline, f"no replica caught up with :{port}: {rep}"
            time.sleep(0.05)
    finally:
        r.close()


def test_the_launcher_forms_three_masters_and_three_replicas(cluster: Settings) -> None:
    assert cluster_ok(cluster)
    assert sorted(roles(cluster).values()) == ["master"] * 3 + ["slave"] * 3
    layout = control.RunLayout.at(cluster.run_dir)
    assert all(ProcRecord.load(layout.pid_record(n)) is not None for n in NODES)
    assert form(cluster, say=lambda _: None) == "already formed"  # a rerun creates nothing


def write(match_id: str, seq: int, prev: int, epoch: int = 1) -> ViewWrite:
    return ViewWrite(match_id, epoch, seq, prev, f'{{"seq":{seq}}}'.encode(),
                     f'{{"u":{seq}}}'.encode(), ((f"{seq}-0", f"n{seq}".encode()),),
                     now_ms=1000 + seq)


def test_every_node_refuses_a_client_without_credentials(cluster: Settings) -> None:
    import redis

    for i in range(len(NODES)):
        r = connect(f"redis://127.0.0.1:{cluster.stack_redis_cluster_port + i}/0", None,
                    socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            r.get("stumpcast:card:{m}")
        r.close()


def test_the_view_commit_runs_on_the_cluster(client: Any, admin: Any) -> None:
    views = ViewCommitter(client)
    assert views.cluster
    matches = [f"t-{uuid.uuid4().hex[:8]}-{i}" for i in range(12)]  # spread over the masters
    try:
        for m in matches:
            assert views.commit(write(m, 1, 0)).status is Status.APPLIED
            assert views.commit(write(m, 2, 1)).status is Status.APPLIED
            assert views.commit(write(m, 2, 1)).status is Status.DUPLICATE
            conflict = views.commit(write(m, 4, 3))
            assert conflict.status is Status.CONFLICT and conflict.stored == Position(1, 2)
            assert client.get(RedisKeys.card(m)) == b'{"seq":2}'
            assert client.xlen(RedisKeys.history(m)) == 2
            assert client.xlen(RedisKeys.notifications(m)) == 2
            assert client.zscore(RedisKeys.live_matches, m) == 1002  # the separate ZADD
        slots = {client.keyslot(RedisKeys.card(m)) for m in matches}
        owners = {client.get_node_from_key(RedisKeys.card(m)).port for m in matches}
        assert len(slots) == len(matches) and len(owners) > 1  # really across masters
    finally:
        for m in matches:
            admin.delete(RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                         RedisKeys.notifications(m))
            admin.zrem(RedisKeys.live_matches, m)


def test_keys_of_one_match_without_a_shared_tag_are_refused(client: Any) -> None:
    """Why the tag: the same script over keys in different slots fails (the old layout)."""
    import redis

    from schemas.viewcommit import script_call, source

    keys, argv = script_call("commit", write("x", 1, 0), live=False)
    untagged = [k.replace("{", "").replace("}", "") for k in keys]
    assert len({client.keyslot(k) for k in untagged}) > 1
    with pytest.raises(redis.RedisClusterException, match="(?i)slot"):
        client.eval(source(), len(untagged), *untagged, *argv)


def test_the_ingest_claim_runs_on_the_cluster(cluster: Settings) -> None:
    from streams.ingest import CLAIM

    client = sync_redis(cluster, RedisUser.INGEST, socket_timeout=5)
    m = f"t-{uuid.uuid4().hex[:8]}"
    claim = client.register_script(CLAIM)
    keys = [RedisKeys.ingest_seqs(m), RedisKeys.ingest_ids(m)]
    try:
        assert claim(keys=keys, args=[1, "e1", 60]) == [b"claimed", b""]
        assert claim(keys=keys, args=[1, "e2", 60]) == [b"held", b"~e1"]
    finally:
        client.delete(*keys)
        client.close()


def commit_through_failover(views: ViewCommitter, w: ViewWrite, deadline: float
                            ) -> tuple[Any, list[str]]:
    """Retry as the streams worker does with a dependency that is down (STYLE.md 14): the
    client's own retries may give up while the replica is still being elected."""
    import redis

    errors: list[str] = []
    while True:
        try:
            return views.commit(w), errors
        except (redis.RedisError, OSError) as exc:
            errors.append(type(exc).__name__)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_master_is_replaced_by_its_replica_and_commits_go_on(
        cluster: Settings, client: Any, admin: Any) -> None:
    """SIGKILL the master of a match's slot: within the retry budget the commit lands on the
    promoted replica (NOSCRIPT there is reloaded by the script object); the launcher restarts
    the dead node, which rejoins as a replica."""
    views = ViewCommitter(client)
    m = f"t-{uuid.uuid4().hex[:8]}"
    try:
        assert views.commit(write(m, 1, 0)).status is Status.APPLIED
        port = client.get_node_from_key(RedisKeys.card(m)).port
        name = NODES[port - cluster.stack_redis_cluster_port]
        record = ProcRecord.load(control.RunLayout.at(cluster.run_dir).pid_record(name))
        assert record is not None
        wait_replicated(cluster, port)  # the test is of the failover, not of async replication
        os.kill(record.pid, signal.SIGKILL)
        killed = time.monotonic()
        result, errors = commit_through_failover(views, write(m, 2, 1), killed + 30)
        took = time.monotonic() - killed
        assert result.status is Status.APPLIED, errors
        assert client.get_node_from_key(RedisKeys.card(m)).port != port
        assert took < 30, f"failover took {took:.1f} s"
        print(f"commit applied {took:.1f} s after the master's SIGKILL; errors on the way: "
              f"{len(errors)} {sorted(set(errors))}")
    finally:
        control.up(cluster, NODES, say=lambda _: None)  # the dead node back, as a replica
        admin.delete(RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                     RedisKeys.notifications(m))
        admin.zrem(RedisKeys.live_matches, m)
    assert info(cluster, port).get("cluster_state") == "ok"
    assert sorted(roles(cluster).values()) == ["master"] * 3 + ["slave"] * 3



def test_the_streams_view_store_runs_on_the_cluster(cluster: Settings, admin: Any) -> None:
    """The streams worker's store as it builds it (``RedisViewStore.connect``: the factory
    gives an asyncio cluster client): commits, a transactional read of card and position (one
    slot), history and notifications."""
    import asyncio

    from streams.viewstore import RedisViewStore

    m = f"t-{uuid.uuid4().hex[:8]}"

    async def scenario() -> Any:
        store = RedisViewStore.connect(cluster)
        try:
            assert (await store.commit(write(m, 1, 0))).status is Status.APPLIED
            assert (await store.commit(write(m, 2, 1))).status is Status.APPLIED
            assert (await store.commit(write(m, 2, 1))).status is Status.DUPLICATE
            return (await store.read(m), await store.history(m), await store.notes(m))
        finally:
            await store.aclose()

    try:
        view, history, notes = asyncio.run(scenario())
        assert view.card == b'{"seq":2}' and view.position == Position(1, 2)
        assert [eid for eid, _ in history] == ["1-0", "2-0"]
        assert [eid for eid, _ in notes] == ["1-0", "2-0"]
        assert admin.zscore(RedisKeys.live_matches, m) == 1002
    finally:
        admin.delete(RedisKeys.card(m), RedisKeys.position(m), RedisKeys.history(m),
                     RedisKeys.notifications(m))
        admin.zrem(RedisKeys.live_matches, m)


def test_the_analytics_merge_runs_on_the_cluster(cluster: Settings, admin: Any) -> None:
    """The analytics sink merges through a pipeline; a cluster pipeline does not load scripts
    (NOSCRIPT on a node's first use), which the sink answers by loading and merging again."""
    from analytics.aggregate import FlushPlan, Partial
    from analytics.sink import RedisSink
    from analytics.window import TOTAL, Stats

    w = 1_790_000_000_000
    admin.script_flush()  # every master: no script cached, as on a fresh or failed-over node
    r = sync_redis(cluster, RedisUser.ANALYTICS, socket_timeout=5)
    matches = [f"t-{uuid.uuid4().hex[:8]}-{i}" for i in range(6)]
    sink = RedisSink(r, "exact", partitions=1, step_ms=10_000)
    try:
        plan = FlushPlan(finals=[Partial(m, w, w + 20_000, True, {0: {TOTAL: Stats(3, 3, 0, 0)}})
                                 for m in matches])
        records = sink.write(plan, 0)
        assert sink.skipped == []
        assert sorted(r.match_id for r in records if (r.region, r.cdn) == ("*", "*")) == \
            sorted(matches)
    finally:
        for m in matches:
            admin.delete(RedisKeys.concurrency_partials(m, w, True), RedisKeys.concurrency(m),
                         RedisKeys.watching(m), RedisKeys.views(m))
        r.close()


def test_the_media_worker_and_the_steering_server_read_the_cluster(
        cluster: Settings, admin: Any, tmp_path: Any) -> None:
    """The media worker's scorebug and the steering server's operator overrides follow
    ``STUMPCAST_REDIS_CLUSTER`` as the media user (both read one node's Redis before)."""
    import asyncio

    from media.feeds import scorebug_loop
    from media.metrics import MediaMetrics
    from media.steering import Policy
    from media.steering_server import SteeringConfig, SteeringServer

    m = f"t-{uuid.uuid4().hex[:8]}"
    card = {"teams": ["CSK", "GT"], "innings": [{"batting_team": "GT", "runs": 12,
                                                 "wickets": 1, "overs": "2.1"}]}
    admin.set(RedisKeys.card(m), json.dumps(card))
    admin.hset(RedisKeys.steering_overrides, "pin:south", "cdn-b")
    auth = credentials(cluster, RedisUser.MEDIA)
    bug = tmp_path / "bug.txt"
    steering = SteeringServer(SteeringConfig(Policy(("cdn-a", "cdn-b")), 0, 10, None,
                                             "redis://unused",
                                             redis_auth=auth,
                                             redis_cluster=cluster.redis_cluster))

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(scorebug_loop(
                     "redis://unused", auth, m, bug, stop, MediaMetrics(), interval=0.2,
                     cluster=cluster.redis_cluster)),
                 asyncio.create_task(steering._overrides(stop, "redis://unused"))]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (bug.exists() and steering.overrides.pins):
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(scenario())
        assert bug.read_text().startswith("GT 12/1 (2.1 ov)"), bug.read_text()
        assert steering.overrides.pins == {"south": "cdn-b"}
    finally:
        admin.delete(RedisKeys.card(m), RedisKeys.steering_overrides)
