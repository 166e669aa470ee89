"""Three Cassandra nodes (`stack up --nodes 3`'s Cassandra) on 127.0.0.1-3: they join one at a
time, the keyspace has 3 replicas, and with one node SIGKILLed, LOCAL_QUORUM writes and reads
and a service role's login go on.

The nodes are the session's `stack up --nodes 3` (the ``nodes3`` fixture, shared with the other
multi-node tests); the test that kills node 3 brings it back.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid

import pytest

from runtime.cassandra import session
from schemas.settings import Settings
from schemas.store_access import CassandraRole
from stumpcast.stack import control
from stumpcast.stack.cassandra_cluster import HOSTS, NODE_TYPES
from stumpcast.stack.procs import ProcRecord
from tests.multinode import MultiNode

pytestmark = [pytest.mark.stack, pytest.mark.slow]
NODES = list(NODE_TYPES)


@pytest.fixture(scope="module")
def nodes(nodes3: MultiNode) -> Settings:
    return nodes3.settings


def known_nodes(s: object, deadline: float) -> set[str]:
    """The nodes the driver found up in the ring (from the control connection's system.local
    and system.peers): node 3 reaches the peers tables by gossip a moment after it serves
    CQL."""
    while True:
        meta = s.cluster.metadata  # type: ignore[attr-defined]
        found = {h.address for h in meta.all_hosts() if h.is_up}
        if found == set(HOSTS) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_three_nodes_one_keyspace_with_three_replicas(nodes: Settings) -> None:
    with session(nodes, CassandraRole.ADMIN) as s:
        assert known_nodes(s, time.monotonic() + 30) == set(HOSTS)
        row = s.execute("SELECT replication FROM system_schema.keyspaces "
                        "WHERE keyspace_name = %s", [nodes.cassandra_keyspace]).one()
        assert row.replication["datacenter1"] == "3"
        auth = s.execute("SELECT replication FROM system_schema.keyspaces "
                         "WHERE keyspace_name = 'system_auth'").one()
        assert auth.replication.get("replication_factor", auth.replication.get("datacenter1")) \
            == "3"


def read_until_answered(s: object, cql: str, deadline: float) -> tuple[list[object], int]:
    """Until gossip convicts a killed node (phi, several seconds), a coordinator may still pick
    it as one of a read's two replicas and time out: the reader retries, as the streams
    worker's store does with any failed read."""
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable

    timeouts = 0
    while True:
        try:
            return list(s.execute(cql, timeout=15)), timeouts  # type: ignore[attr-defined]
        except (OperationTimedOut, ReadTimeout, Unavailable):
            timeouts += 1
            if time.monotonic() > deadline:
                raise


def test_local_quorum_goes_on_with_a_node_killed(nodes: Settings) -> None:
    """SIGKILL node 3: writes and reads at LOCAL_QUORUM (2 of 3) keep working, and the streams
    worker's role still logs in (its role is on every node)."""
    assert nodes.cassandra_consistency == "LOCAL_QUORUM"
    table = f"{nodes.cassandra_keyspace}.t_{uuid.uuid4().hex[:8]}"
    record = ProcRecord.load(control.RunLayout.at(nodes.run_dir).pid_record("cassandra-3"))
    assert record is not None
    with session(nodes, CassandraRole.ADMIN) as s:
        created = s.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, v text)")
        # Every node knows the table before the first write (the driver's own wait for schema
        # agreement gives up after 10 s without an error; CI saw "table doesn't exist").
        if not created.response_future.is_schema_agreed:
            assert s.cluster.control_connection.wait_for_schema_agreement(wait_time=60)
        s.execute(f"INSERT INTO {table} (k, v) VALUES (0, 'before')")
        os.kill(record.pid, signal.SIGKILL)
        killed = time.monotonic()
        for k in range(1, 51):
            s.execute(f"INSERT INTO {table} (k, v) VALUES (%s, 'during')", [k])
        wrote = time.monotonic() - killed
        rows, timeouts = read_until_answered(s, f"SELECT k FROM {table}", killed + 90)
        print(f"50 LOCAL_QUORUM writes done {wrote:.1f} s after node 3's SIGKILL; the first "
              f"full read answered after {time.monotonic() - killed:.1f} s ({timeouts} timed "
              "out while the other nodes still counted node 3 as up)")
        assert len(rows) == 51
    with session(nodes, CassandraRole.STREAMS) as s:  # a login during the outage
        assert s.execute("SELECT release_version FROM system.local").one() is not None
    control.up(nodes, NODES, say=lambda _: None)  # node 3 back (hints replay to it)
    # ... with its schema: it logs its system tables (no ``unsafesystem``), so it knows the
    # keyspace when it answers as a coordinator (it did not, and refused every query)
    keyspaces = node3_answers(nodes, table, time.monotonic() + 90)
    assert nodes.cassandra_keyspace in keyspaces
    with session(nodes, CassandraRole.ADMIN) as s:
        s.execute(f"DROP TABLE {table}")


def node3_answers(nodes: Settings, table: str, deadline: float) -> set[str]:
    """The keyspaces node 3 names as a coordinator, once it takes connections again: `stack
    up`'s health wait can pass while the driver's first pool to the restarted node is still
    refused (CI: "Host has been marked down"), so an unreachable node is retried until the
    deadline; a node that answers without the keyspace, or refuses the table, fails at once."""
    from cassandra.cluster import NoHostAvailable

    node3 = dataclasses.replace(nodes, cassandra_hosts=(HOSTS[2],))
    while True:
        try:
            with session(node3, CassandraRole.ADMIN) as s:
                host = next(h for h in s.cluster.metadata.all_hosts() if h.address == HOSTS[2])
                rows = s.execute("SELECT keyspace_name FROM system_schema.keyspaces", host=host)
                names = {r.keyspace_name for r in rows}
                if nodes.cassandra_keyspace in names:
                    s.execute(f"SELECT k FROM {table} LIMIT 1", host=host)
                return names
        except NoHostAvailable as exc:
            if time.monotonic() > deadline or not all(
                    "marked down" in str(e) or "refused" in str(e).lower()
                    for e in exc.errors.values()):
                raise
        time.sleep(2)
