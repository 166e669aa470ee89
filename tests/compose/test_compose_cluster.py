"""docker-compose.cluster.yml describes the multi-node topology of `stack up --nodes 3`, and
its HAProxy config is valid and checks the gateways it names (offline: no Docker engine)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from schemas.settings import Settings

HERE = Path(__file__).resolve().parents[2] / "compose"
CLUSTER = HERE / "docker-compose.cluster.yml"
HAPROXY = HERE / "haproxy.cfg"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(CLUSTER.read_text())["services"]


def named(services: dict, prefix: str) -> list[str]:
    return sorted(n for n in services if re.fullmatch(rf"{prefix}-\d+", n))


def settings_of(services: dict, name: str) -> Settings:
    return Settings.from_env({k: str(v) for k, v in services[name]["environment"].items()})


def test_three_kafka_voters_replicating_three_ways_with_two_in_sync(services):
    nodes = named(services, "kafka")
    assert nodes == ["kafka-1", "kafka-2", "kafka-3"]
    envs = [services[n]["environment"] for n in nodes]
    assert sorted(e["KAFKA_NODE_ID"] for e in envs) == ["1", "2", "3"]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1  # one cluster, formatted alike
    for name, env in zip(nodes, envs, strict=True):
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {"1": "kafka-1:9093", "2": "kafka-2:9093", "3": "kafka-3:9093"}
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"CLIENT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert len({services[n]["volumes"][0] for n in nodes}) == 3  # a data volume each
    s = settings_of(services, "streams-1")
    assert set(s.kafka_bootstrap) == {f"{n}:9092" for n in nodes}
    assert s.kafka_replication_factor == 3


def test_three_cassandra_nodes_joining_in_turn_at_local_quorum(services):
    nodes = named(services, "cassandra")
    assert nodes == ["cassandra-1", "cassandra-2", "cassandra-3"]
    for prev, node in zip(nodes, nodes[1:], strict=False):
        assert services[node]["depends_on"] == {prev: {"condition": "service_healthy"}}
    for node in nodes:
        env = services[node]["environment"]
        assert "-Dcassandra.system_auth.default_rf=3" in env["JVM_EXTRA_OPTS"]
        assert env["CASSANDRA_SEEDS"] == "cassandra-1" and env["CASSANDRA_DC"] == "datacenter1"
        assert "healthcheck" in services[node]
    s = settings_of(services, "streams-1")
    assert set(s.cassandra_hosts) == set(nodes)
    assert s.cassandra_replication == {"class": "NetworkTopologyStrategy", "datacenter1": 3}
    assert s.cassandra_consistency == "LOCAL_QUORUM"


def test_a_redis_cluster_of_three_masters_and_three_replicas(services):
    nodes = named(services, "redis")
    assert nodes == [f"redis-{i}" for i in range(1, 7)]
    for node in nodes:
        command = " ".join(services[node]["command"])
        for flag in ("--cluster-enabled yes", "--aclfile", "--cluster-node-timeout 5000",
                     "masteruser admin"):
            assert flag in command, (node, flag)
        assert services[node]["environment"]["HOSTNAME_ANNOUNCED"] == node
    create = " ".join(services["redis-cluster"]["command"])
    assert "--cluster create" in create and "--cluster-replicas 1" in create
    assert "for n in 1 2 3 4 5 6" in create
    assert set(settings_of(services, "gateway-1").redis_cluster) == {f"{n}:6379" for n in nodes}


def test_every_service_redundant_as_planned(services):
    streams = named(services, "streams")
    assert len(streams) == 3
    ids = {settings_of(services, n).streams_instance_id for n in streams}
    assert len(ids) == 3 and "" not in ids  # static membership, one id each
    assert named(services, "gateway") == ["gateway-1", "gateway-2"]
    assert services["analytics"]["deploy"]["replicas"] == 2
    assert services["notifier"]["deploy"]["replicas"] == 2
    assert "media" in services
    for name in (*streams, "gateway-1", "gateway-2", "analytics", "notifier", "media"):
        assert services[name]["depends_on"] == {
            "init": {"condition": "service_completed_successfully"}}, name


def test_haproxy_balances_the_gateways_on_their_readiness(services):
    cfg = HAPROXY.read_text()
    servers = re.findall(r"^\s*server \S+ (\S+):(\d+) check", cfg, re.M)
    gateways = named(services, "gateway")
    assert sorted(h for h, _ in servers) == gateways
    for host, port in servers:
        assert int(port) == settings_of(services, host).gateway_port
    assert "http-check send meth GET uri /readyz" in cfg
    assert "balance leastconn" in cfg and "timeout tunnel" in cfg
    bind = re.search(r"^\s*bind :(\d+)$", cfg, re.M)
    assert bind is not None
    assert services["lb"]["ports"] == [f"{bind.group(1)}:{bind.group(1)}"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["lb"]["volumes"]


def test_haproxy_accepts_the_config():
    """HAProxy's own parser (`haproxy -c`, Debian's haproxy from `make system-deps`): the
    gateways' names need not resolve here (init-addr none)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert haproxy, "haproxy is missing (make setup installs the haproxy package)"
    done = subprocess.run([haproxy, "-c", "-f", str(HAPROXY)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
