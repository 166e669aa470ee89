"""Redis and Cassandra themselves: no client without credentials, and each service user or role
only what ``schemas.store_access`` gives it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import cassandra, redisconn
from schemas.settings import Settings
from schemas.store_access import CassandraRole, RedisUser
from schemas.topology import EVENTS_TABLE, RedisKeys
from stumpcast.stack.probes import cassandra_session

pytestmark = pytest.mark.stack
SERVICES = [u for u in RedisUser if u is not RedisUser.ADMIN]


def refused(call: Any, *words: str) -> tuple[bool, str]:
    """Whether ``call()`` raised an error whose text has one of ``words``."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the server's refusal, whatever its type
        text = f"{type(exc).__name__}: {exc}"
        return any(w.lower() in text.lower() for w in words), text
    return False, "answered"


@pytest.fixture
def as_user(redis_stack: Settings) -> Iterator[Any]:
    clients: list[Any] = []

    def make(user: str, auth: redisconn.Auth | str = "file") -> Any:
        creds = redisconn.credentials(redis_stack, user) if auth == "file" else auth
        client = redisconn.connect(redis_stack.redis_url, creds,  # type: ignore[arg-type]
                                   socket_timeout=5)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def test_redis_refuses_a_client_without_credentials(as_user: Any, attacks: Any) -> None:
    anonymous = as_user("-", None)
    ok, why = refused(anonymous.ping, "NOAUTH", "authentication")
    attacks.check("redis: PING without a password", ok, why)
    ok, why = refused(lambda: anonymous.set(RedisKeys.card("attack"), b"{}"), "NOAUTH",
                      "authenticated")
    attacks.check("redis: SET of a card without a password", ok, why)
    ok, why = refused(lambda: as_user("-", ("default", "")).ping(), "WRONGPASS",
                      "invalid username-password")
    attacks.check("redis: AUTH as the default user", ok, why)
    ok, why = refused(lambda: as_user("-", ("admin", "admin")).ping(), "WRONGPASS",
                      "invalid username-password")
    attacks.check("redis: AUTH as admin with a guessed password", ok, why)


def test_redis_service_users_cannot_run_admin_commands(as_user: Any, attacks: Any) -> None:
    commands = [("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("DEBUG", "SLEEP", "0"),
                ("KEYS", "*"), ("SCRIPT", "FLUSH"), ("ACL", "LIST"), ("SHUTDOWN", "NOSAVE"),
                ("CLIENT", "KILL", "ID", "1"), ("CLIENT", "LIST"), ("MONITOR",)]
    for user in SERVICES:
        client = as_user(user)
        assert client.ping()  # the user itself works
        for command in commands:
            # DEBUG is refused before the ACL check (enable-debug-command is off): either way
            ok, why = refused(lambda c=command, r=client: r.execute_command(*c), "NOPERM",
                              "DEBUG command not allowed")
            attacks.check(f"redis: {user} runs {' '.join(command)}", ok, why)


def test_redis_users_write_only_their_keys(as_user: Any, attacks: Any) -> None:
    match = f"attack-{uuid.uuid4().hex[:8]}"
    writes = [(RedisUser.GATEWAY, RedisKeys.card(match)),
              (RedisUser.GATEWAY, RedisKeys.history(match)),
              (RedisUser.MEDIA, RedisKeys.card(match)),
              (RedisUser.ANALYTICS, RedisKeys.card(match)),
              (RedisUser.NOTIFIER, RedisKeys.position(match)),
              (RedisUser.INGEST, RedisKeys.card(match)),
              (RedisUser.OPS, RedisKeys.webhooks),
              (RedisUser.STREAMS, RedisKeys.webhooks)]
    for user, key in writes:
        ok, why = refused(lambda k=key, u=user: as_user(u).set(k, b"{}"), "NOPERM")
        attacks.check(f"redis: {user} writes {key.split(':')[1]}:", ok, why)
    ok, why = refused(lambda: as_user(RedisUser.GATEWAY).get("elsewhere:secret"), "NOPERM")
    attacks.check("redis: gateway reads a key outside stumpcast's", ok, why)


def test_redis_services_still_do_their_work(as_user: Any, redis_stack: Settings) -> None:
    """The other side of least privilege: each service's own reads and writes pass."""
    match = f"test-{uuid.uuid4().hex[:8]}"
    admin = as_user(RedisUser.ADMIN)
    try:
        as_user(RedisUser.STREAMS).set(RedisKeys.card(match), b"{}")
        assert as_user(RedisUser.GATEWAY).get(RedisKeys.card(match)) == b"{}"
        assert as_user(RedisUser.MEDIA).get(RedisKeys.card(match)) == b"{}"
        as_user(RedisUser.ANALYTICS).hset(RedisKeys.concurrency(match), "x", "1")
        assert as_user(RedisUser.OPS).hget(RedisKeys.concurrency(match), "x") == b"1"
    finally:
        admin.delete(RedisKeys.card(match), RedisKeys.concurrency(match))


def _cql_refused(settings: Settings, auth: Any, cql: str, params: Any = None) -> tuple[bool, str]:
    log = logging.getLogger("cassandra")
    before = log.level
    log.setLevel(logging.CRITICAL)  # the driver logs each refused login
    try:
        def run() -> None:
            with cassandra_session(settings, auth, 10.0) as s:
                s.execute(cql, params)
        return refused(run, "Unauthorized", "AuthenticationFailed", "Bad credentials",
                       "requires authentication", "has no", "not have")
    finally:
        log.setLevel(before)


def test_cassandra_refuses_anonymous_and_builtin_logins(cassandra_stack: Settings,
                                                        attacks: Any) -> None:
    s = cassandra_stack
    ok, why = _cql_refused(s, None, f"SELECT * FROM {s.cassandra_keyspace}.{EVENTS_TABLE} LIMIT 1")
    attacks.check("cassandra: a session without credentials", ok, why)
    ok, why = _cql_refused(s, ("cassandra", "cassandra"), "SELECT * FROM system_auth.roles")
    attacks.check("cassandra: the built-in cassandra/cassandra superuser", ok, why)
    ok, why = _cql_refused(s, ("admin", "admin"), "SELECT * FROM system_auth.roles")
    attacks.check("cassandra: admin with a guessed password", ok, why)


def test_cassandra_roles_do_only_their_part(cassandra_stack: Settings, attacks: Any) -> None:
    s = cassandra_stack
    table = f"{s.cassandra_keyspace}.{EVENTS_TABLE}"
    analyst = cassandra.credentials(s, CassandraRole.ANALYST)
    streams = cassandra.credentials(s, CassandraRole.STREAMS)
    insert = (f"INSERT INTO {table} (match_id, seq, event_id, type, ts, body) "
              "VALUES ('attack', 1, 'forged', 'delivery', toTimestamp(now()), 0x00)")
    ok, why = _cql_refused(s, analyst, insert)
    attacks.check("cassandra: the analyst (reader) role writes the event store", ok, why)
    ok, why = _cql_refused(s, analyst, f"DELETE FROM {table} WHERE match_id = 'x'")
    attacks.check("cassandra: the analyst role deletes a match's events", ok, why)
    ok, why = _cql_refused(s, analyst, f"TRUNCATE {table}")
    attacks.check("cassandra: the analyst role truncates the event store", ok, why)
    ok, why = _cql_refused(s, streams, f"DROP TABLE {table}")
    attacks.check("cassandra: the streams role drops the event store", ok, why)
    ok, why = _cql_refused(s, streams, "CREATE ROLE attacker WITH SUPERUSER = true "
                                       "AND LOGIN = true AND PASSWORD = 'x'")
    attacks.check("cassandra: the streams role makes itself a superuser", ok, why)
    ok, why = _cql_refused(s, streams, "SELECT * FROM system_auth.roles")
    attacks.check("cassandra: the streams role reads the roles' password hashes", ok, why)
    # and what they are for still works: the reader reads, the writer writes
    with cassandra_session(s, analyst, 10.0) as session:
        session.execute(f"SELECT * FROM {table} LIMIT 1")
