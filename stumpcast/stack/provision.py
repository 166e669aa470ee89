"""`stack init`: create the Kafka topics and the Cassandra keyspace and tables, idempotently.

Works on whatever the settings point at (the local stack by default, or real clusters through
STUMPCAST_KAFKA_BOOTSTRAP, STUMPCAST_CASSANDRA_HOSTS, ...): names come from schemas.topology,
replication from the settings.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.settings import Settings
from schemas.topology import TOPICS, keyspace_cql, tables_cql
from stumpcast.stack.errors import StackError
from stumpcast.stack.probes import any_open, cassandra_session, kafka_admin

TIMEOUT = 30.0


def init_kafka(settings: Settings, say: Callable[[str], None]) -> dict[str, str]:
    """Create every topic of ``TOPICS`` that does not exist. Returns {topic: what happened}."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    unreachable = StackError(f"Kafka at {settings.kafka_bootstrap_str} did not answer. Is it "
                             "running? (`stumpcast stack status`, or check "
                             "STUMPCAST_KAFKA_BOOTSTRAP)")
    if not any_open(settings.kafka_bootstrap):
        raise unreachable
    admin = kafka_admin(settings.kafka_bootstrap, 10.0)
    try:
        existing = admin.list_topics(timeout=TIMEOUT).topics
    except KafkaException:
        raise unreachable from None
    wanted = [NewTopic(t.name, num_partitions=t.partitions,
                       replication_factor=settings.kafka_replication_factor,
                       config=t.kafka_config())
              for t in TOPICS if t.name not in existing]
    outcome = {t.name: _existing(t.partitions, len(existing[t.name].partitions))
               for t in TOPICS if t.name in existing}
    if wanted:
        for name, future in admin.create_topics(wanted, request_timeout=TIMEOUT).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise StackError(f"creating Kafka topic {name} failed: {exc}") from None
                outcome[name] = "exists"
    created = sum(v == "created" for v in outcome.values())
    say(f"kafka {settings.kafka_bootstrap_str}: {len(TOPICS)} topics "
        f"({created} created, {len(TOPICS) - created} already there)")
    for name, what in outcome.items():
        if what.startswith("exists with"):
            say(f"  warning: {name} {what}")
    return outcome


def _existing(wanted: int, actual: int) -> str:
    if actual == wanted:
        return "exists"
    return f"exists with {actual} partitions, topology says {wanted} (left as it is)"


def init_cassandra(settings: Settings, say: Callable[[str], None]) -> list[str]:
    """Run the keyspace and table CQL (all ``IF NOT EXISTS``). Returns the statements run."""
    statements = [keyspace_cql(settings.cassandra_keyspace, settings.cassandra_replication),
                  *tables_cql(settings.cassandra_keyspace)]
    hosts = ",".join(settings.cassandra_hosts)
    try:
        with cassandra_session(settings.cassandra_hosts, settings.cassandra_port,
                               10.0) as session:
            for cql in statements:
                session.execute(cql, timeout=60)
    except StackError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's errors, translated at the seam
        raise StackError(f"Cassandra at {hosts}:{settings.cassandra_port} failed: {exc}. "
                         "Is it running? (`stumpcast stack status`, or check "
                         "STUMPCAST_CASSANDRA_HOSTS / STUMPCAST_CASSANDRA_PORT)") from None
    say(f"cassandra {hosts}:{settings.cassandra_port}: keyspace "
        f"{settings.cassandra_keyspace} and {len(statements) - 1} table(s) ready")
    return statements
