"""Three KRaft Kafka nodes for `stack up --nodes 3`: each a broker and a controller voter.

Each node is a ``Server`` of its own (``kafka-1`` .. ``kafka-3``) with the single node's launch
(jars, JVM flags, SASL listeners: ``KafkaServer``) and its own ports, data folder and node id.
All three are formatted with one cluster id, kept in the run folder so a node formatted later
(its data folder removed) joins the same cluster. They start together: a lone voter cannot
elect a leader (2 of 3 needed), so a node answers its health probe only once a quorum exists
(cluster.md §2.5).

Addresses: node i binds 127.0.0.i (Linux routes all of 127/8 to the loopback, cluster.md §0),
every node on the same two ports. Nodes on one address need six ports, and the machine's
ephemeral port range covers our port block: a node's outbound connection to a voter that had
not bound yet took that voter's port once (BindException), which distinct addresses avoid
(connections leave from 127.0.0.1, so only node 1's ports can be taken that way).

Replication: topics and the internal topics with 3 replicas, ``min.insync.replicas`` 2 (see
``configs.kafka_server_properties``); `stack up --nodes 3` creates the topics with
replication factor 3 (``control.local_settings``).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from schemas.settings import Settings
from stumpcast.stack import secrets
from stumpcast.stack.configs import KAFKA_LOG4J2, kafka_server_properties
from stumpcast.stack.kafka_server import KafkaServer, cluster_id
from stumpcast.stack.server import Port, Server

NODES = 3
REPLICATION = 3
# The nodes are prepared in parallel threads (control._up): the first to get here generates
# the credentials and the cluster id, the others must read those, not make their own (seen: a
# FileNotFoundError from two threads replacing the same file, and brokers formatted with two
# cluster ids refusing each other's votes, INCONSISTENT_CLUSTER_ID).
_FIRST = threading.Lock()


def host(index: int) -> str:
    return f"127.0.0.{index}"


def ports(settings: Settings, index: int = 1) -> tuple[int, int]:
    """(client, controller) ports, the same on every node's address."""
    return settings.stack_kafka_cluster_port, settings.stack_kafka_cluster_port + 1


def bootstrap(settings: Settings) -> tuple[str, ...]:
    return tuple(f"{host(i)}:{ports(settings, i)[0]}" for i in range(1, NODES + 1))


def voters(settings: Settings) -> str:
    return ",".join(f"{i}@{host(i)}:{ports(settings, i)[1]}" for i in range(1, NODES + 1))


class KafkaClusterNode(KafkaServer):
    """One of the three; ``index`` is set by the subclasses below."""

    index = 0

    def ports(self) -> list[Port]:
        client, controller = ports(self.settings, self.index)
        setting = "STUMPCAST_STACK_KAFKA_CLUSTER_PORT"
        return [Port(client, setting, "broker", host(self.index)),
                Port(controller, setting, "controller", host(self.index))]

    @property
    def bootstrap(self) -> list[str]:
        return [f"{host(self.index)}:{ports(self.settings, self.index)[0]}"]

    @property
    def local(self) -> Settings:
        return dataclasses.replace(super().local, kafka_replication_factor=REPLICATION)

    def format_id(self) -> str:
        """The one id every node is formatted with (created by the first node to format)."""
        path = self.layout.data("kafka-cluster") / "cluster.id"
        with _FIRST:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(cluster_id())
            return path.read_text().strip()

    def write_config(self) -> tuple[Path, Path]:
        conf = self.layout.conf(self.name)
        props, log4j = conf / "server.properties", conf / "log4j2.properties"
        with _FIRST:
            creds = secrets.ensure(self.settings)
        client, controller = ports(self.settings, self.index)
        text = kafka_server_properties(
            broker_port=client, controller_port=controller,
            log_dir=self.layout.data(self.name), admin_password=creds.admin_password,
            controller_password=creds.controller_password, node_id=self.index,
            voters=voters(self.settings), replication=REPLICATION, host=host(self.index))
        props.unlink(missing_ok=True)  # holds passwords: created afresh with mode 0600
        secrets.write_private(props, text.encode())
        log4j.write_text(KAFKA_LOG4J2)
        return props, log4j


NODE_TYPES: dict[str, type[Server]] = {
    f"kafka-{i}": type(f"KafkaClusterNode{i}", (KafkaClusterNode,),
                       {"name": f"kafka-{i}", "index": i})
    for i in range(1, NODES + 1)
}


def active_controller(settings: Settings) -> int | None:
    """The node id of the active KRaft controller, from the nodes' logs: the node that logged
    "Becoming the active controller at epoch E" with the highest E. (Admin clients cannot tell:
    in KRaft, DescribeCluster names a random broker as the controller.)"""
    import re

    from stumpcast.stack.layout import RunLayout

    layout = RunLayout.at(settings.run_dir)
    pattern = re.compile(r"\[QuorumController id=(\d+)\] Becoming the active controller at "
                         r"epoch (\d+)")
    best: tuple[int, int] | None = None
    for i in range(1, NODES + 1):
        path = layout.log(f"kafka-{i}")
        if not path.exists():
            continue
        with path.open(errors="replace") as fh:
            for line in fh:
                found = pattern.search(line)
                if found and (best is None or int(found[2]) > best[0]):
                    best = (int(found[2]), int(found[1]))
    return best[1] if best else None
