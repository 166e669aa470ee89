"""Config rendering and command building, without any server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.settings import Settings
from stumpcast.stack import configs, jars, java
from stumpcast.stack.cassandra_server import CassandraServer, jpms_flags
from stumpcast.stack.errors import PortInUse, ServerDied, ToolMissing
from stumpcast.stack.kafka_server import KafkaServer, cluster_id
from stumpcast.stack.layout import RunLayout
from tests.tools import require_tool


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_server_properties_single_node_kraft() -> None:
    props = _props(configs.kafka_server_properties(
        broker_port=29092, controller_port=29093, log_dir=Path("/r/data/kafka"),
        admin_password="a1", controller_password="c2"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "CLIENT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:29092"
    assert props["log.dirs"] == "/r/data/kafka"
    assert props["log.cleaner.dedupe.buffer.size"] == str(16 * 2**20)
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["offsets.topic.num.partitions"]) <= 4
    assert props["transaction.state.log.replication.factor"] == "1"
    # static voters: --standalone must not be used when formatting (infra.md §1.3)
    assert "controller.quorum.bootstrap.servers" not in props


def test_server_properties_require_sasl_and_acls() -> None:
    """No listener without SASL; nothing allowed that no ACL allows (cluster.md §2.1-2.4)."""
    props = _props(configs.kafka_server_properties(
        broker_port=29092, controller_port=29093, log_dir=Path("/r"),
        admin_password="a1", controller_password="c2"))
    protocols = dict(pair.split(":") for pair in
                     props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"  # not GSSAPI (KAFKA-14369)
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    assert 'user_admin="a1"' in props["listener.name.client.plain.sasl.jaas.config"]
    assert 'user_controller="c2"' in props["listener.name.controller.plain.sasl.jaas.config"]


def test_cassandra_yaml_ports_and_dirs() -> None:
    doc = yaml.safe_load(configs.cassandra_yaml(native_port=29042, storage_port=27000,
                                                data_dir=Path("/r/data/cassandra")))
    assert doc["native_transport_port"] == 29042
    assert doc["storage_port"] == 27000
    assert doc["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:27000"
    assert doc["listen_address"] == doc["rpc_address"] == "127.0.0.1"
    assert doc["data_file_directories"] == ["/r/data/cassandra/data"]
    assert doc["commitlog_directory"] == "/r/data/cassandra/commitlog"
    assert doc["row_cache_size"] == "0MiB"


def test_redis_conf_loopback_foreground() -> None:
    lines = configs.redis_conf(port=26379, data_dir=Path("/r/data/redis")).splitlines()
    assert "port 26379" in lines
    assert "bind 127.0.0.1" in lines
    assert "daemonize no" in lines
    assert "dir /r/data/redis" in lines
    assert "set-proc-title no" in lines  # keeps our marker in the command line


def test_cluster_id_is_22_url_safe_chars() -> None:
    for _ in range(200):
        value = cluster_id()
        assert len(value) == 22 and not value.startswith("-")


def test_jpms_block_and_cassandra_command(tmp_path: Path) -> None:
    flags = jpms_flags()
    assert flags.count("--add-exports") == 8 and flags.count("--add-opens") >= 14
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "jamm-0.4.0.jar").touch()
    settings = Settings.from_env({"STUMPCAST_RUN_DIR": str(tmp_path / "run")})
    server = CassandraServer(settings, RunLayout.at(settings.run_dir))
    cmd = server.command(Path("/jdk/bin/java"), lib, tmp_path / "conf")
    assert cmd[0] == "/jdk/bin/java"
    assert f"-javaagent:{lib}/jamm-0.4.0.jar" in cmd
    assert "-Dcassandra-foreground=yes" in cmd
    assert f"-Dcassandra.config=file://{tmp_path}/conf/cassandra.yaml" in cmd
    assert "-Xmx1024m" in cmd
    assert cmd[-1] == "org.apache.cassandra.service.CassandraDaemon"


def test_kafka_command_marker_and_heap(tmp_path: Path) -> None:
    settings = Settings.from_env({"STUMPCAST_RUN_DIR": str(tmp_path / "run"),
                                  "STUMPCAST_STACK_KAFKA_HEAP": "512m"})
    server = KafkaServer(settings, RunLayout.at(settings.run_dir))
    server.layout.prepare("kafka")
    props, log4j = server.write_config()
    assert props.stat().st_mode & 0o777 == 0o600  # it holds the admin's password
    args = server.java_args(Path("/jdk/bin/java"), tmp_path / "libs", log4j, "512m")
    assert "-Xmx512m" in args and f"{tmp_path}/libs/*" in args
    assert f"-Dlog4j2.configurationFile={log4j}" in args
    assert server.marker in str(props)  # the marker is in every command line we start


def test_wrapper_poms_and_pinned_plugin(tmp_path: Path) -> None:
    kafka = jars.kafka_jars("4.3.1")
    pom = kafka.pom()
    assert "<artifactId>kafka_2.13</artifactId><version>4.3.1</version>" in pom
    assert "log4j-slf4j-impl" in pom  # without the binding the broker is silent
    assert kafka.lib_dir(tmp_path) == tmp_path / "kafka-4.3.1" / "libs"
    cass = jars.cassandra_jars("5.0.8")
    assert cass.lib_dir(tmp_path) == tmp_path / "cassandra-5.0.8" / "lib"
    cmd = jars.mvn_command(kafka, tmp_path / "pom.xml", tmp_path / "out", tmp_path / "m2")
    assert "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies" in cmd
    assert f"-Dmaven.repo.local={tmp_path / 'm2'}" in cmd


def test_cached_jars_are_reused_without_maven(tmp_path: Path) -> None:
    kafka = jars.kafka_jars("4.3.1")
    kafka.lib_dir(tmp_path).mkdir(parents=True)
    (kafka.home(tmp_path) / jars.MARKER).write_text("done")
    said: list[str] = []
    assert jars.ensure_jars(kafka, tmp_path, said.append) == kafka.lib_dir(tmp_path)
    assert said == []


def test_no_java_found_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(java, "_candidates", lambda: [])
    with pytest.raises(ToolMissing, match="openjdk-17-jre-headless"):
        java.find_java("")


def test_error_messages_say_what_to_do(tmp_path: Path) -> None:
    taken = str(PortInUse("redis", 16379, "STUMPCAST_STACK_REDIS_PORT", "pid 42 (nc -l)"))
    assert "16379" in taken and "STUMPCAST_STACK_REDIS_PORT" in taken and "pid 42" in taken
    died = str(ServerDied("kafka", "exited with code 1 while starting", tmp_path / "k.log",
                          ["boom"]))
    assert str(tmp_path / "k.log") in died and "| boom" in died


def test_multi_node_kafka_properties_replicate_three_ways() -> None:
    from stumpcast.stack.configs import kafka_server_properties

    text = kafka_server_properties(broker_port=9192, controller_port=9193,
                                   log_dir=Path("/d"), admin_password="a",
                                   controller_password="c", node_id=2,
                                   voters="1@127.0.0.1:9193,2@127.0.0.2:9193,3@127.0.0.3:9193",
                                   replication=3, host="127.0.0.2")
    lines = set(text.splitlines())
    assert {"node.id=2", "controller.quorum.voters=1@127.0.0.1:9193,2@127.0.0.2:9193,"
            "3@127.0.0.3:9193", "listeners=CLIENT://127.0.0.2:9192,CONTROLLER://127.0.0.2:9193",
            "default.replication.factor=3", "min.insync.replicas=2",
            "offsets.topic.replication.factor=3", "transaction.state.log.min.isr=2"} <= lines
    single = kafka_server_properties(broker_port=9192, controller_port=9193,
                                     log_dir=Path("/d"), admin_password="a",
                                     controller_password="c")
    assert "min.insync.replicas=2" not in single and "offsets.topic.replication.factor=1" in single


def test_cassandra_nodes_get_their_address_the_seed_and_spread_tokens() -> None:
    from stumpcast.stack.cassandra_cluster import token
    from stumpcast.stack.configs import cassandra_yaml

    text = cassandra_yaml(native_port=9042, storage_port=7000, data_dir=Path("/d"),
                          host="127.0.0.3", seed="127.0.0.1", initial_token=token(3))
    assert "listen_address: 127.0.0.3" in text and "rpc_address: 127.0.0.3" in text
    assert 'seeds: "127.0.0.1:7000"' in text
    assert f"initial_token: {token(3)}" in text
    assert [token(i) for i in (1, 2, 3)] == [-2**63, -3074457345618258603, 3074457345618258602]


def test_the_load_balancer_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    """`haproxy -c` checks the rendered config offline (no port is bound)."""
    import subprocess

    from stumpcast.stack.lb_server import haproxy_cfg

    binary = require_tool("haproxy", "apt-get install haproxy")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_cfg(port=18000, backends=("127.0.0.1:8101", "127.0.0.1:8102"),
                               socket_path=str(tmp_path / "s.sock")))
    done = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "http-check send meth GET uri /readyz" in cfg.read_text()
    # a gateway busy accepting a burst is not taken out (and its sessions shut) by 2 s of
    # slow checks: that cascaded onto the other node with 10,000 clients
    assert "timeout check   3s" in cfg.read_text() and "fall 3" in cfg.read_text()
    # a node that is briefly not ready keeps its clients: a Redis failover or the other
    # node's reconnect burst closed 4,900 and 9,800 sessions that needed nothing
    assert "shutdown-sessions" not in cfg.read_text()


def test_a_shared_port_is_free_only_for_listeners_that_share_it() -> None:
    """The two HAProxy processes bind one port with SO_REUSEPORT: the launcher lets the
    second start beside the first, and still refuses a port held by anything else."""
    import socket

    from stumpcast.stack.ports import is_free

    for shares, free_to_a_twin in ((True, True), (False, False)):
        with socket.socket() as held:
            if shares:
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            held.bind(("127.0.0.1", 0))
            held.listen()
            port = held.getsockname()[1]
            assert not is_free(port)
            assert is_free(port, shared=True) is free_to_a_twin


def test_nodes_3_chooses_every_node_and_other_counts_are_refused(tmp_path: Path) -> None:
    import dataclasses

    from stumpcast.stack import control
    from stumpcast.stack.errors import StackError

    settings = dataclasses.replace(Settings.from_env(), run_dir=tmp_path / "run")
    names = [s.name for s in control.servers(settings, nodes=3)]
    assert names == [*(f"kafka-{i}" for i in (1, 2, 3)), *(f"cassandra-{i}" for i in (1, 2, 3)),
                     *(f"redis-{i}" for i in range(1, 7))]
    assert [s.wave for s in control.servers(settings, nodes=3) if "cassandra" in s.name] == \
        [0, 1, 2]  # the Cassandra nodes join one at a time
    assert [s.name for s in control.servers(settings)] == ["kafka", "cassandra", "redis"]
    with pytest.raises(StackError, match="1 or 3 nodes"):
        control.servers(settings, nodes=2)
    three = control.local_settings(settings, nodes=3)
    assert three.kafka_replication_factor == 3 and len(three.kafka_bootstrap) == 3
    assert three.cassandra_consistency == "LOCAL_QUORUM"
    assert three.cassandra_replication == {"class": "NetworkTopologyStrategy", "datacenter1": 3}
    assert len(three.redis_cluster) == 6


def test_a_cluster_node_logs_its_system_tables_so_a_kill_keeps_its_schema(tmp_path: Path
                                                                          ) -> None:
    """``-Dcassandra.unsafesystem=true`` keeps system tables out of the commit log: a
    SIGKILLed cluster node came back without its schema and peers (`stumpcast chaos`). The
    single dev node keeps the faster start."""
    from stumpcast.stack.cassandra_cluster import NODE_TYPES

    unsafe = "-Dcassandra.unsafesystem=true"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "jamm-0.4.0.jar").write_bytes(b"")
    settings = Settings.from_env({"STUMPCAST_RUN_DIR": str(tmp_path / "run")})
    layout = RunLayout.at(settings.run_dir)
    node = NODE_TYPES["cassandra-2"](settings, layout)
    argv = node.command(Path("/java"), lib, tmp_path)  # type: ignore[attr-defined]
    assert unsafe not in argv and "-Dcassandra.ring_delay_ms=5000" in argv
    assert unsafe in CassandraServer(settings, layout).command(Path("/java"), lib,
                                                                      tmp_path)
