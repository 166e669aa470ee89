"""Config files of the three servers, rendered as text. Pure functions, tested without servers."""

from __future__ import annotations

from pathlib import Path


def kafka_server_properties(*, broker_port: int, controller_port: int, log_dir: Path,
                            admin_password: str, controller_password: str, node_id: int = 1,
                            voters: str = "", replication: int = 1,
                            host: str = "127.0.0.1") -> str:
    """Single-node KRaft, broker and controller in one process (infra.md §1.5), secured.

    Static voters, so storage is formatted without --standalone (infra.md §1.3). The small
    dedupe buffer and internal-topic partition counts keep heap and first-group-join time low.

    Security (../shared/reference/cluster.md §2.1-2.4): the client listener takes SASL
    SCRAM-SHA-512 (every service principal; users created by ``stack init``) and PLAIN for
    ``admin`` alone, defined here because a SCRAM user can only be created by someone already
    authenticated, and the broker connects to itself as admin (transaction markers). The
    controller listener takes PLAIN (SCRAM credentials live in the metadata log the controller
    serves, KAFKA-15513). ``StandardAuthorizer`` denies what no ACL allows; admin and the
    controller are super users. Passwords are in this file: it is written with mode 0600.

    Multi-node (`stack up --nodes 3`, ``replication`` 3): ``voters`` names the three
    controllers; topics and the internal topics get 3 replicas and ``min.insync.replicas`` 2,
    so an ``acks=all`` write (the event producer's, the relay's, the streams app's) is on two
    brokers before it is acknowledged and one broker may die without losing or refusing one
    (cluster.md §2.1). Brokers replicate over the client listener as admin (PLAIN, defined in
    every node's JAAS line), so no SCRAM user has to exist before the quorum does.
    """
    voters = voters or f"1@{host}:{controller_port}"
    isr = 2 if replication >= 3 else 1
    multi = "" if replication == 1 else f"""\
default.replication.factor={replication}
min.insync.replicas={isr}
# a dead broker is fenced and its partitions move after this (default 9000, cluster.md §2.6)
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
"""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    admin = f'{plain} username="admin" password="{admin_password}" user_admin="{admin_password}";'
    ctl = (f'{plain} username="controller" password="{controller_password}" '
           f'user_controller="{controller_password}";')
    return f"""\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=CLIENT://{host}:{broker_port},CONTROLLER://{host}:{controller_port}
advertised.listeners=CLIENT://{host}:{broker_port}
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config={scram}
listener.name.client.plain.sasl.jaas.config={admin}
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={ctl}
sasl.mechanism.controller.protocol=PLAIN
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
log.dirs={log_dir}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor={replication}
# default 50 partitions: fewer make the first consumer-group join faster
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={isr}
{multi}# default 3000 ms: a single-node test broker has nobody to wait for
group.initial.rebalance.delay.ms=0
# default 128 MiB, allocated on heap at startup (infra.md §1.5)
log.cleaner.dedupe.buffer.size=16777216
num.network.threads=2
num.io.threads=2
"""


# Console only: the launcher sends stdout to logs/kafka.log (infra.md §1.6, no YAML needed).
KAFKA_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.req.name = kafka.request.logger
logger.req.level = WARN
"""


def cassandra_yaml(*, native_port: int, storage_port: int, data_dir: Path,
                   auth: bool = True, host: str = "127.0.0.1", seed: str = "127.0.0.1",
                   initial_token: int | None = None) -> str:
    """Minimal single-node cassandra.yaml with 5.0 key names (infra.md §2.5).

    ``auth``: logins checked against the roles table (``PasswordAuthenticator``) and every
    statement against the role's permissions (``CassandraAuthorizer``); otherwise AllowAll.

    The loader rejects unknown keys, so nothing optional is added. Caches are sized for a
    1 GiB heap instead of the heap/4 defaults.

    Multi-node (`stack up --nodes 3`): node i listens on ``host`` 127.0.0.i with the same
    ports, node 1 is the seed, and each has its own evenly spaced ``initial_token``
    (cluster.md §4.2).
    """
    token = "" if initial_token is None else f"initial_token: {initial_token}\n"
    return f"""\
cluster_name: 'stumpcast local'
num_tokens: 1
{token}partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [{data_dir}/data]
commitlog_directory: {data_dir}/commitlog
saved_caches_directory: {data_dir}/saved_caches
hints_directory: {data_dir}/hints
cdc_raw_directory: {data_dir}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_disk_access_mode: legacy
commitlog_total_space: 512MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seed}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: {"PasswordAuthenticator" if auth else "AllowAllAuthenticator"}
authorizer: {"CassandraAuthorizer" if auth else "AllowAllAuthorizer"}
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 16MiB
row_cache_size: 0MiB
counter_cache_size: 0MiB
file_cache_size: 64MiB
networking_cache_size: 32MiB
concurrent_compactors: 1
auto_snapshot: false
incremental_backups: false
storage_compatibility_mode: NONE
"""


# Without a config logback defaults to DEBUG on the console (infra.md §2.6).
CASSANDRA_LOGBACK = """\
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def redis_conf(*, port: int, data_dir: Path, acl_file: Path | None = None,
               snapshots: bool = True) -> str:
    """Loopback only, in the foreground, logging to stdout, data in the run folder.

    ``set-proc-title no`` keeps the command line as we launched it (with the config path), so
    ``stack down`` can recognise the process before signalling it. ``snapshots`` False: no RDB
    saves (the cluster's dev nodes, whose replicas hold the copy).
    """
    return f"""\
port {port}
bind 127.0.0.1
protected-mode yes
daemonize no
supervised no
set-proc-title no
logfile ""
dir {data_dir}
dbfilename dump.rdb
appendonly no
save {'3600 1 300 100 60 10000' if snapshots else '""'}
""" + (f"aclfile {acl_file}\n" if acl_file is not None else "")
