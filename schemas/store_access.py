"""Who may do what on Redis and Cassandra: the users, roles and their rights, as data.

Like ``schemas.access`` for Kafka: ``stumpcast stack up`` turns this into Redis ACL rules
(an ``aclfile`` of the local Redis) and Cassandra roles and grants, the security tests read it,
and ``runtime.redisconn`` / ``runtime.cassandra`` are the one place a client picks its user.

Redis (7.0 ACLs; ../shared/reference material: the ``ACL SETUSER`` rules). Every service user
gets ``+@all -@dangerous -@admin`` minus a few scripting and pub/sub commands it never needs:
``@dangerous`` holds FLUSHALL, FLUSHDB, KEYS, CONFIG, DEBUG, SHUTDOWN, MONITOR, MIGRATE,
RESTORE, ...; then key patterns: ``~p`` read and write, ``%R~p`` read only. The ``default``
user is switched off; ``admin`` (all keys, all commands) provisions and is what tests use.

Cassandra (``PasswordAuthenticator`` + ``CassandraAuthorizer``): ``admin`` is the superuser
that replaces the built-in ``cassandra`` one; ``streams`` reads and writes the event store's
keyspace; ``analyst`` only reads it.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.topology import REDIS_PREFIX


class RedisUser(StrEnum):
    ADMIN = "admin"          # provisioning, tests, benchmarks, `stumpcast smoke`
    STREAMS = "streams"      # the streams worker, `stumpcast rebuild`
    INGEST = "ingest"        # the scorer ingest API (its idempotency keys only)
    GATEWAY = "gateway"
    ANALYTICS = "analytics"
    NOTIFIER = "notifier"    # the notifier and `stumpcast webhooks`
    MEDIA = "media"          # the media worker and the steering server
    OPS = "ops"              # the metrics exporter and `stumpcast steering`
    FLAGS = "flags"          # `stumpcast flags` and the degradation controller


# Commands a service never needs, beyond the @dangerous and @admin categories: flushing or
# killing the script cache, functions (FUNCTION FLUSH/DELETE is @write, not @dangerous), and
# switching database.
SERVICE_COMMANDS = "+@all -@dangerous -@admin -script|flush -script|kill -function -select -swapdb"


def _rw(*families: str) -> list[str]:
    return [f"~{REDIS_PREFIX}{f}" for f in families]


def _ro(*families: str) -> list[str]:
    return [f"%R~{REDIS_PREFIX}{f}" for f in families]


# The key patterns of each user (a trailing "*" is a family of per-match keys).
REDIS_KEYS: dict[RedisUser, list[str]] = {
    RedisUser.ADMIN: ["~*"],
    # the view commit script writes card, position, history, notifications and live
    RedisUser.STREAMS: _rw("card:*", "pos:*", "hist:*", "notes:*", "live"),
    RedisUser.INGEST: _rw("ingest:*"),
    RedisUser.GATEWAY: _ro("card:*", "pos:*", "hist:*", "notes:*", "watching:*", "live",
                           "flags", "flags:log"),
    RedisUser.ANALYTICS: [*_rw("conc:*", "views:*", "watching:*", "playheads"),
                          *_ro("nospoil")],
    RedisUser.NOTIFIER: [*_rw("webhooks", "wh:*", "nospoil", "playheads"), *_ro("notes:*")],
    RedisUser.MEDIA: _ro("card:*", "steer:*"),
    RedisUser.OPS: [*_ro("conc:*", "live", "pos:*", "watching:*", "webhooks", "wh:*",
                         "flags"),  # the /ops page shows the degradation level
                    *_rw("steer:*")],
    # the current flags (a hash) and their change stream, written by one apply script
    RedisUser.FLAGS: _rw("flags", "flags:log"),
}


# Beyond that, per user: the gateway wakes its own blocked XREAD reader when a client subscribes
# to a new match (CLIENT UNBLOCK is @admin; it can only end a block early, never read or write).
REDIS_EXTRA_COMMANDS: dict[RedisUser, str] = {RedisUser.GATEWAY: "+client|unblock"}


def redis_acl_rule(user: RedisUser, password_sha256: str) -> str:
    """One ``user ...`` line of an ACL file; the password only as its SHA-256 (``#hex``)."""
    commands = "+@all" if user is RedisUser.ADMIN else SERVICE_COMMANDS
    if user in REDIS_EXTRA_COMMANDS:
        commands += " " + REDIS_EXTRA_COMMANDS[user]
    channels = "allchannels" if user is RedisUser.ADMIN else "resetchannels"
    keys = " ".join(REDIS_KEYS[user])
    return f"user {user.value} reset on #{password_sha256} {keys} {channels} {commands}"


# The built-in user, switched off: a client without credentials is refused (NOAUTH).
REDIS_DEFAULT_OFF = "user default reset off resetchannels -@all"


class CassandraRole(StrEnum):
    ADMIN = "admin"        # superuser: provisioning (keyspace, roles, grants), tests
    STREAMS = "streams"    # the event store: append and read back (gap fills, rebuild)
    ANALYST = "analyst"    # read-only (an analyst's cqlsh)


def cassandra_grants(role: CassandraRole, keyspace: str) -> list[str]:
    """The GRANT statements of ``role`` on the event store's keyspace."""
    if role is CassandraRole.STREAMS:
        perms = ["SELECT", "MODIFY"]
    elif role is CassandraRole.ANALYST:
        perms = ["SELECT"]
    else:
        return []
    return [f"GRANT {p} ON KEYSPACE {keyspace} TO {role.value}" for p in perms]
