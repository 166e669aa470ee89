"""Three Cassandra nodes for `stack up --nodes 3`, on 127.0.0.1, .2 and .3.

Each node is a ``Server`` of its own (``cassandra-1`` .. ``cassandra-3``) with the single
node's launch (``CassandraServer``: jars, JVM flags, auth) on its own loopback address, with
the same CQL and storage ports (distinct addresses, cluster.md §4.1; JMX stays off as on the
single node, so no JMX port can collide). Node 1 is the seed.

Nodes join one at a time: two nodes bootstrapping at once fail ("Other bootstrapping/leaving/
moving nodes detected", cluster.md §4.3), so node i starts in launch wave i - 1 (``wave``:
``control`` starts a wave once the previous one is healthy, and a node serves CQL only once it
has joined). ``cassandra.ring_delay_ms`` 5000 shortens each join's wait for the ring (30 s by
default). ``cassandra.system_auth.default_rf`` 3: the roles live on every node, so a login
still works with one node down (with the default 1, the node holding a role would be needed).

Replication: the keyspace with ``NetworkTopologyStrategy`` datacenter1: 3 (SimpleSnitch's data
centre), read and written at ``LOCAL_QUORUM`` (``control.local_settings``): 2 of 3 replicas
answer each write and each read, so a read sees every acknowledged write while a node is down.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runtime.cassandra import credentials
from runtime.secrets import SecretMissing
from schemas.store_access import CassandraRole
from stumpcast.stack.cassandra_server import CassandraServer
from stumpcast.stack.configs import CASSANDRA_LOGBACK, cassandra_yaml
from stumpcast.stack.probes import cassandra_ready
from stumpcast.stack.server import Port, Server

NODES = 3
HOSTS = tuple(f"127.0.0.{i}" for i in range(1, NODES + 1))
REPLICATION = {"class": "NetworkTopologyStrategy", "datacenter1": NODES}
CONSISTENCY = "LOCAL_QUORUM"


def token(index: int) -> int:
    """Evenly spaced Murmur3 tokens: i x 2^64 / 3 - 2^63 (cluster.md §4.2)."""
    return (index - 1) * 2**64 // NODES - 2**63


class CassandraClusterNode(CassandraServer):
    """One of the three; ``index`` is set by the subclasses below."""

    index = 0

    @property
    def host(self) -> str:
        return HOSTS[self.index - 1]

    @property
    def wave(self) -> int:
        return self.index - 1

    def ports(self) -> list[Port]:
        s = self.settings
        return [Port(s.stack_cassandra_port, "STUMPCAST_STACK_CASSANDRA_PORT", "cql", self.host),
                Port(s.stack_cassandra_storage_port, "STUMPCAST_STACK_CASSANDRA_STORAGE_PORT",
                     "storage", self.host)]

    def probe(self, timeout: float = 5.0) -> bool:
        local = dataclasses.replace(self.settings, cassandra_hosts=(self.host,),
                                    cassandra_port=self.settings.stack_cassandra_port)
        try:
            auth = credentials(self.settings, CassandraRole.ADMIN)
        except SecretMissing:
            auth = None  # a refused login is still an answer (probes.cassandra_ready)
        return cassandra_ready(local, auth, timeout)

    def write_config(self) -> Path:
        conf = self.layout.conf(self.name)
        (conf / "cassandra.yaml").write_text(cassandra_yaml(
            native_port=self.settings.stack_cassandra_port,
            storage_port=self.settings.stack_cassandra_storage_port,
            data_dir=self.layout.data(self.name),
            auth=self.settings.cassandra_auth == "password",
            host=self.host, seed=HOSTS[0], initial_token=token(self.index)))
        (conf / "logback.xml").write_text(CASSANDRA_LOGBACK)
        return conf

    def command(self, java: Path, lib: Path, conf: Path) -> list[str]:
        # Without ``unsafesystem``: it keeps the system tables out of the commit log, so a
        # SIGKILLed node came back without its schema and peers (seen in `stumpcast chaos`:
        # "incompatible schema", its events dropped from the commit log replay).
        argv = [a for a in super().command(java, lib, conf) if a != UNSAFE_SYSTEM]
        at = argv.index("-cp")
        return [*argv[:at], "-Dcassandra.ring_delay_ms=5000",
                f"-Dcassandra.system_auth.default_rf={NODES}", *argv[at:]]


UNSAFE_SYSTEM = "-Dcassandra.unsafesystem=true"

NODE_TYPES: dict[str, type[Server]] = {
    f"cassandra-{i}": type(f"CassandraClusterNode{i}", (CassandraClusterNode,),
                           {"name": f"cassandra-{i}", "index": i})
    for i in range(1, NODES + 1)
}
