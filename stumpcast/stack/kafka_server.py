"""Apache Kafka as one KRaft process (broker + controller) from Maven Central jars."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import uuid
from pathlib import Path

from runtime.kafka import client_config
from runtime.secrets import SecretMissing
from schemas.access import Principal
from schemas.settings import Settings
from stumpcast.stack import secrets
from stumpcast.stack.configs import KAFKA_LOG4J2, kafka_server_properties
from stumpcast.stack.errors import ServerDied
from stumpcast.stack.jars import ensure_jars, kafka_jars
from stumpcast.stack.probes import kafka_ready
from stumpcast.stack.procs import tail
from stumpcast.stack.server import Port, Server, StartContext

# kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS (infra.md §1.4).
JVM_PERFORMANCE = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                   "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]


def cluster_id() -> str:
    """22-char URL-safe base64 of a random UUID, never starting with '-' (infra.md §1.3)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


class KafkaServer(Server):
    name = "kafka"
    stop_grace = 30.0

    def ports(self) -> list[Port]:
        s = self.settings
        return [Port(s.stack_kafka_port, "STUMPCAST_STACK_KAFKA_PORT", "broker"),
                Port(s.stack_kafka_controller_port, "STUMPCAST_STACK_KAFKA_CONTROLLER_PORT",
                     "controller")]

    def needs_java(self) -> bool:
        return True

    @property
    def bootstrap(self) -> list[str]:
        return [f"127.0.0.1:{self.settings.stack_kafka_port}"]

    def probe(self, timeout: float = 5.0) -> bool:
        """A metadata request as admin (a broker answers none without SASL credentials)."""
        try:
            admin = client_config(self.local, Principal.ADMIN)
        except SecretMissing:  # never started here: no credentials to ask with
            return False
        return kafka_ready(admin, timeout)

    @property
    def local(self) -> Settings:
        """The settings pointed at this broker, whatever STUMPCAST_KAFKA_BOOTSTRAP says."""
        return dataclasses.replace(self.settings, kafka_bootstrap=tuple(self.bootstrap),
                                   kafka_security="sasl")

    def write_config(self) -> tuple[Path, Path]:
        conf = self.layout.conf(self.name)
        props, log4j = conf / "server.properties", conf / "log4j2.properties"
        creds = secrets.ensure(self.settings)
        text = kafka_server_properties(
            broker_port=self.settings.stack_kafka_port,
            controller_port=self.settings.stack_kafka_controller_port,
            log_dir=self.layout.data(self.name), admin_password=creds.admin_password,
            controller_password=creds.controller_password)
        props.unlink(missing_ok=True)  # holds passwords: created afresh with mode 0600
        secrets.write_private(props, text.encode())
        log4j.write_text(KAFKA_LOG4J2)
        return props, log4j

    def java_args(self, java: Path, lib: Path, log4j: Path, heap: str) -> list[str]:
        return [str(java), f"-Xms{heap}", f"-Xmx{heap}", *JVM_PERFORMANCE,
                f"-Djava.io.tmpdir={self.layout.tmp}",
                f"-Dkafka.logs.dir={self.log_path.parent}",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp", f"{lib}/*"]

    def prepare(self, ctx: StartContext) -> list[str]:
        java = ctx.java()
        lib = ensure_jars(kafka_jars(self.settings.kafka_version), self.settings.cache_dir,
                          ctx.say, ctx.maven_repo)
        props, log4j = self.write_config()
        if not (self.layout.data(self.name) / "meta.properties").exists():
            self._format(self.java_args(java, lib, log4j, "256m"), props)
        return [*self.java_args(java, lib, log4j, self.settings.stack_kafka_heap),
                "kafka.Kafka", str(props)]

    def format_id(self) -> str:
        """The cluster id to format with: a new one for the single node."""
        return cluster_id()

    def _format(self, tool_args: list[str], props: Path) -> None:
        """Format the storage once; --ignore-formatted makes a repeat harmless (§1.3, §1.7)."""
        cmd = [*tool_args, "kafka.tools.StorageTool", "format", "-t", self.format_id(),
               "-c", str(props), "--ignore-formatted"]
        with self.log_path.open("ab") as log:
            log.write(b"\n--- stumpcast: formatting Kafka storage\n")
            log.flush()
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, check=False, timeout=120)
        if done.returncode != 0:
            raise ServerDied(self.name, f"storage format failed (exit {done.returncode})",
                             self.log_path, tail(self.log_path, 20))
