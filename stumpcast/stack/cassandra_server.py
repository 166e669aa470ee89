"""Apache Cassandra 5.0 on JDK 17, from the cassandra-all jar and its dependencies."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runtime.cassandra import credentials
from runtime.secrets import SecretMissing
from schemas.store_access import CassandraRole
from stumpcast.stack.configs import CASSANDRA_LOGBACK, cassandra_yaml
from stumpcast.stack.errors import DownloadFailed
from stumpcast.stack.jars import cassandra_jars, ensure_jars
from stumpcast.stack.probes import cassandra_ready
from stumpcast.stack.server import Port, Server, StartContext

# conf/jvm-server.options and conf/jvm17-server.options of Cassandra 5.0 (infra.md §2.4).
# Left out on purpose: -XX:+AlwaysPreTouch (would make the whole heap resident at once) and
# -XX:+UseNUMA (irrelevant on a laptop).
JVM_OPTIONS = [
    "-Xss256k", "-ea", "-da:net.openhft...",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m", "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300", "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:+UseThreadPriorities", "-XX:+HeapDumpOnOutOfMemoryError", "-XX:+PerfDisableSharedMem",
    "-XX:+UseTLAB", "-XX:+ResizeTLAB", "-XX:OnOutOfMemoryError=kill -9 %p",
    "-Djava.net.preferIPv4Stack=true", "-Dchronicle.analytics.disable=true",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true", "-Dio.netty.allocator.maxOrder=11",
]
# The JPMS block for JDK 17: without it startup dies in NativeLibrary.<clinit> (infra.md §2.4).
ADD_EXPORTS = [
    "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security", "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
]
ADD_OPENS = [
    "java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect", "java.base/jdk.internal.math",
    "java.base/jdk.internal.module", "java.base/jdk.internal.util.jar",
    "jdk.management/com.sun.management.internal", "java.base/sun.nio.ch", "java.base/java.io",
    "java.base/java.lang.reflect", "java.base/java.lang", "java.base/java.util",
    "java.base/java.nio",
    "java.base/java.nio.charset",  # jamm sizing of prepared statements (datastax PR #1581)
]


INITIAL_HEAP = "256m"


def jpms_flags() -> list[str]:
    out: list[str] = []
    for item in ADD_EXPORTS:
        out += ["--add-exports", f"{item}=ALL-UNNAMED"]
    for item in ADD_OPENS:
        out += ["--add-opens", f"{item}=ALL-UNNAMED"]
    return out


class CassandraServer(Server):
    """The single node; ``cassandra_cluster.CassandraClusterNode`` is one of three, differing
    only by ``host``, ``placement`` and ``cluster_flags``."""

    name = "cassandra"
    stop_grace = 60.0  # drains memtables on SIGTERM
    # No fsync of the system tables (quicker start-up): a dev stack's single node. The cluster's
    # nodes keep them (cassandra_cluster).
    unsafe_system = True

    @property
    def host(self) -> str:
        """The loopback address the node binds (the cluster's nodes: 127.0.0.1-3)."""
        return "127.0.0.1"

    def ports(self) -> list[Port]:
        s = self.settings
        return [Port(s.stack_cassandra_port, "STUMPCAST_STACK_CASSANDRA_PORT", "cql", self.host),
                Port(s.stack_cassandra_storage_port, "STUMPCAST_STACK_CASSANDRA_STORAGE_PORT",
                     "storage", self.host)]

    def placement(self) -> dict[str, Any]:
        """Extra ``cassandra_yaml`` arguments placing the node in a ring: none on its own."""
        return {}

    def cluster_flags(self) -> list[str]:
        """Extra JVM system properties for joining a ring: none on its own."""
        return []

    def needs_java(self) -> bool:
        return True

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
            auth=self.settings.cassandra_auth == "password", **self.placement()))
        (conf / "logback.xml").write_text(CASSANDRA_LOGBACK)
        return conf

    def prepare(self, ctx: StartContext) -> list[str]:
        java = ctx.java()
        lib = ensure_jars(cassandra_jars(self.settings.cassandra_version),
                          self.settings.cache_dir, ctx.say, ctx.maven_repo)
        return self.command(java, lib, self.write_config())

    def command(self, java: Path, lib: Path, conf: Path) -> list[str]:
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise DownloadFailed(f"no jamm-*.jar in {lib}: the Cassandra jar cache is "
                                 f"incomplete. Delete {lib.parent} and run `stack up` again.")
        heap = self.settings.stack_cassandra_heap
        data, logs = self.layout.data(self.name), self.log_path.parent
        return [
            # A small initial heap: as root Cassandra's mlockall (MCL_CURRENT) succeeds and pins
            # every page committed at that moment, so -Xms=-Xmx would make the whole heap
            # resident at once ("JNA mlockall successful" in the log). Growth after that is
            # ordinary, unpinned memory.
            str(java), f"-Xms{INITIAL_HEAP}", f"-Xmx{heap}", *JVM_OPTIONS, *jpms_flags(),
            f"-javaagent:{jamm[-1]}",
            f"-Djava.io.tmpdir={self.layout.tmp}", f"-Djna.tmpdir={self.layout.tmp}",
            f"-Dcassandra.config=file://{conf}/cassandra.yaml",
            f"-Dcassandra.storagedir={data}", f"-Dcassandra.logdir={logs}",
            f"-Dlogback.configurationFile={conf}/logback.xml",
            # Without it CassandraDaemon closes stdout/stderr after setup (infra.md §2.4).
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            *(["-Dcassandra.unsafesystem=true"] if self.unsafe_system else []),
            # The built-in superuser at once, not 10 s after start: `stack up` replaces it
            # with its own (stumpcast.stack.cassandra_auth) and waits for it meanwhile.
            "-Dcassandra.superuser_setup_delay_ms=0",
            *self.cluster_flags(),
            "-cp", f"{conf}:{lib}/*", "org.apache.cassandra.service.CassandraDaemon",
        ]
