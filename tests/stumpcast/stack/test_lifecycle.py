"""up / down / status on a private run folder, and the failures users meet.

Only Redis is started (cheap); Kafka and Cassandra go through the same code. Nothing here
touches the shared stack: own run folder, own free ports.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from schemas.settings import Settings
from stumpcast.stack import control
from stumpcast.stack.errors import ServerDied
from stumpcast.stack.layout import RunLayout
from stumpcast.stack.procs import ProcRecord, is_alive
from stumpcast.stack.redis_server import RedisServer

if TYPE_CHECKING:  # a fixture's type; tests/ is not a package, so no runtime import
    from conftest import PrivateStack


def _pid(stack: PrivateStack, server: str) -> int:
    record = ProcRecord.load(RunLayout.at(stack.run_dir).pid_record(server))
    assert record is not None
    return record.pid


def test_up_twice_then_down_leaves_nothing(private_stack: PrivateStack,
                                           redis_binary: str) -> None:
    first = private_stack.cli("stack", "up", "--only", "redis")
    assert first.returncode == 0, first.stderr
    assert "starting redis" in first.stdout
    pid = _pid(private_stack, "redis")
    assert is_alive(pid) and os.getpgid(pid) == pid  # its own process group

    second = private_stack.cli("stack", "up", "--only", "redis")
    assert second.returncode == 0, second.stderr
    assert "starting" not in second.stdout and "already healthy" in second.stdout
    assert _pid(private_stack, "redis") == pid

    status = private_stack.cli("stack", "status", "--only", "redis")
    line = next(x for x in status.stdout.splitlines() if " redis " in x)
    assert private_stack.env["STUMPCAST_STACK_REDIS_PORT"] in line
    assert str(pid) in line and "healthy" in line

    down = private_stack.cli("stack", "down", "--only", "redis")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not is_alive(pid)
    assert private_stack.processes() == []
    assert private_stack.cli("stack", "status", "--quiet", "--only", "redis").returncode == 1


def test_down_never_signals_a_pid_that_is_not_ours(private_stack: PrivateStack) -> None:
    layout = RunLayout.at(private_stack.run_dir)
    layout.prepare("redis")
    # A record pointing at this very test process: right pid, wrong start time and command.
    ProcRecord(os.getpid(), 1, str(layout.conf("redis")), ["redis-server"]).save(
        layout.pid_record("redis"))
    out = private_stack.cli("stack", "down", "--only", "redis")
    assert out.returncode == 0 and "not running" in out.stdout  # and we are still alive


def test_port_taken_names_port_setting_and_holder(private_stack: PrivateStack,
                                                  redis_binary: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        out = private_stack.cli("stack", "up", "--only", "redis",
                                env={"STUMPCAST_STACK_REDIS_PORT": str(port)})
    assert out.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in out.stderr
    assert "STUMPCAST_STACK_REDIS_PORT" in out.stderr
    assert f"pid {os.getpid()}" in out.stderr  # the holder, found through /proc
    assert "Traceback" not in out.stderr
    log = RunLayout.at(private_stack.settings.run_dir).log("redis")
    assert str(log) in out.stderr and "already in use" in log.read_text()


def test_java_missing_says_what_to_install(private_stack: PrivateStack,
                                           tmp_path: Path) -> None:
    no_jdk = tmp_path / "not-a-jdk"
    no_jdk.mkdir()
    out = private_stack.cli("stack", "up", "--only", "kafka",
                            env={"STUMPCAST_JAVA_HOME": str(no_jdk), "PATH": str(tmp_path)})
    assert out.returncode == 1
    assert f"STUMPCAST_JAVA_HOME={no_jdk} has no bin/java" in out.stderr
    assert "openjdk-17-jre-headless" in out.stderr
    assert "Traceback" not in out.stderr
    assert private_stack.processes() == []
    log = RunLayout.at(private_stack.settings.run_dir).log("kafka")
    assert str(log) in out.stderr and "has no bin/java" in log.read_text()


class BrokenRedis(RedisServer):
    """Redis with a directive it does not know: it exits at once, as a bad config would."""

    def render_config(self) -> str:
        return super().render_config() + "no-such-directive yes\n"


def test_server_dying_at_start_shows_log_tail(private_stack: PrivateStack,
                                              redis_binary: str) -> None:
    settings = private_stack.settings
    broken = BrokenRedis(settings, RunLayout.at(settings.run_dir))
    with pytest.raises(ServerDied) as info:
        control.up(settings, say=lambda _: None, chosen=[broken])
    message = str(info.value)
    log = RunLayout.at(settings.run_dir).log("redis")
    assert "redis exited with code 1 while starting" in message
    assert str(log) in message
    assert "no-such-directive" in message  # redis' own complaint, from the log tail
    assert private_stack.processes() == []
    assert not RunLayout.at(settings.run_dir).pid_record("redis").exists()


def test_init_uses_the_configured_endpoints_not_the_stack_ports(
        private_stack: PrivateStack) -> None:
    dead = private_stack.env["STUMPCAST_STACK_REDIS_PORT"]  # free, nobody listens
    out = private_stack.cli("stack", "init", "--only", "kafka",
                            env={"STUMPCAST_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}"})
    assert out.returncode == 1
    assert f"Kafka at 127.0.0.1:{dead} did not answer" in out.stderr
    assert "STUMPCAST_KAFKA_BOOTSTRAP" in out.stderr and "Traceback" not in out.stderr


def test_up_initialises_the_local_stack_whatever_the_endpoints_say(
        private_stack: PrivateStack) -> None:
    env = {**private_stack.env, "STUMPCAST_KAFKA_BOOTSTRAP": "prod-1:9092,prod-2:9092",
           "STUMPCAST_CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3"}
    local = control.local_settings(Settings.from_env(env))
    assert local.kafka_bootstrap == (f"127.0.0.1:{env['STUMPCAST_STACK_KAFKA_PORT']}",)
    assert local.cassandra_port == int(env["STUMPCAST_STACK_CASSANDRA_PORT"])
    assert local.cassandra_replication == {"class": "SimpleStrategy", "replication_factor": 1}


class RedisBeforeUsers(RedisServer):
    """The Redis of a stack started before Redis had ACL users: no aclfile, `default` open."""

    def render_config(self) -> str:
        return super().render_config().replace(f"aclfile {self.acl_path}\n", "")

    def probe(self, timeout: float = 5.0) -> bool:
        from stumpcast.stack.probes import redis_ready

        return redis_ready(self.url, 2.0, None)


def test_a_redis_started_before_acl_users_is_given_them_by_stack_up(
        private_stack: PrivateStack, redis_binary: str) -> None:
    import redis

    from runtime import redisconn
    from schemas.store_access import RedisUser

    settings = private_stack.settings
    old = RedisBeforeUsers(settings, RunLayout.at(settings.run_dir))
    control.up(settings, say=lambda _: None, chosen=[old])
    anonymous = redisconn.connect(old.url, None, socket_timeout=2)
    try:
        assert anonymous.ping()  # the old, open Redis
        out = private_stack.cli("stack", "up", "--only", "redis")
        assert out.returncode == 0, out.stderr
        assert "already healthy" in out.stdout, out.stdout  # not restarted: given its users
        with pytest.raises(redis.RedisError):
            redisconn.connect(old.url, None, socket_timeout=2).ping()
        gateway = redisconn.sync_redis(settings, RedisUser.GATEWAY, socket_timeout=2)
        with pytest.raises(redis.exceptions.NoPermissionError):
            gateway.execute_command("FLUSHALL")
    finally:
        anonymous.close()
        private_stack.cli("stack", "down")
