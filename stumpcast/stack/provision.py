"""`stack init`: create the Kafka topics, SCRAM users and ACLs, and the Cassandra keyspace and
tables, idempotently.

Works on whatever the settings point at (the local stack by default, or real clusters through
STUMPCAST_KAFKA_BOOTSTRAP, STUMPCAST_CASSANDRA_HOSTS, ...): names come from schemas.topology,
replication from the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.kafka import acl_binding, client_config, wait_visible
from schemas.access import Principal, scorer_grants, service_grants
from schemas.settings import Settings
from schemas.store_access import CassandraRole
from schemas.topology import TOPICS, keyspace_cql, tables_cql
from stumpcast.stack import cassandra_auth, secrets
from stumpcast.stack.errors import StackError
from stumpcast.stack.probes import any_open, kafka_admin

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
    if settings.kafka_security == "sasl":
        secrets.ensure(settings)
    admin = kafka_admin(client_config(settings, Principal.ADMIN), 10.0)
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
    if settings.kafka_security == "sasl":
        users, acls = kafka_access(admin, settings)
        say(f"kafka {settings.kafka_bootstrap_str}: {users} SCRAM users, {acls} ACLs")
    return outcome


def kafka_access(admin: Any, settings: Settings) -> tuple[int, int]:
    """Upsert every principal's SCRAM credential (so a regenerated password takes effect)
    and create the ACLs of ``schemas.access`` (creating an existing ACL changes nothing).
    Returns (users, ACLs)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    users = secrets.kafka_users(settings)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(name, info, pw.encode())
               for name, pw in sorted(users.items())]
    grants = [*service_grants()]
    for scorer_id in sorted(secrets.load_registry(settings).scorers):
        grants += scorer_grants(scorer_id)
    bindings = [acl_binding(g) for g in grants]
    try:
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(TIMEOUT)
        for future in admin.create_acls(bindings, request_timeout=TIMEOUT).values():
            future.result(TIMEOUT)
        wait_visible(admin, bindings, TIMEOUT)  # services may start right after `stack up`
    except (KafkaException, TimeoutError) as exc:
        raise StackError(f"creating Kafka users and ACLs failed: {exc}") from None
    return len(upserts), len(bindings)


def _existing(wanted: int, actual: int) -> str:
    if actual == wanted:
        return "exists"
    return f"exists with {actual} partitions, topology says {wanted} (left as it is)"


def init_cassandra(settings: Settings, say: Callable[[str], None]) -> list[str]:
    """Run the keyspace and table CQL (all ``IF NOT EXISTS``). Returns the statements run."""
    statements = [keyspace_cql(settings.cassandra_keyspace, settings.cassandra_replication),
                  *tables_cql(settings.cassandra_keyspace)]
    hosts = ",".join(settings.cassandra_hosts)
    auth = settings.cassandra_auth == "password"
    if auth:
        secrets.ensure(settings)
    try:
        with cassandra_auth.admin_session(settings) as session:
            for cql in statements:
                session.execute(cql, timeout=60)
            grants = cassandra_auth.ensure_roles(session, settings) if auth else 0
    except StackError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's errors, translated at the seam
        raise StackError(f"Cassandra at {hosts}:{settings.cassandra_port} failed: {exc}. "
                         "Is it running? (`stumpcast stack status`, or check "
                         "STUMPCAST_CASSANDRA_HOSTS / STUMPCAST_CASSANDRA_PORT)") from None
    say(f"cassandra {hosts}:{settings.cassandra_port}: keyspace "
        f"{settings.cassandra_keyspace} and {len(statements) - 1} table(s) ready"
        + (f", {len(CassandraRole) - 1} roles, {grants} grants" if auth else ""))
    return statements
