"""Cassandra roles of the local stack (``PasswordAuthenticator`` + ``CassandraAuthorizer``).

A fresh node has one role, the built-in superuser ``cassandra`` (password ``cassandra``), made
by the node itself a moment after its CQL port opens (``cassandra.superuser_setup_delay_ms``,
0 on the local stack). ``admin_session`` logs in as our ``admin`` role; when that is refused
it makes ``admin`` (a superuser with the generated password) as ``cassandra`` and then drops
``cassandra``, so its well-known password opens nothing. ``ensure_roles`` creates the
service roles of ``schemas.store_access`` (or resets their passwords to the files') and
grants them their permissions on the event store's keyspace.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import Any

from runtime.cassandra import credentials
from schemas.settings import Settings
from schemas.store_access import CassandraRole, cassandra_grants
from stumpcast.stack import probes
from stumpcast.stack.errors import StackError
from stumpcast.stack.probes import cassandra_session, login_refused

BUILTIN = ("cassandra", "cassandra")  # the node's default superuser (Cassandra docs)


@contextlib.contextmanager
def admin_session(settings: Settings, timeout: float = 60.0) -> Iterator[Any]:
    """A session as ``admin`` (or without credentials when auth is off), made first if
    needed; waits up to ``timeout`` for the node's built-in superuser to exist."""
    auth = credentials(settings, CassandraRole.ADMIN)
    if auth is not None and _open_to_anyone(settings):
        raise StackError(
            "Cassandra accepts logins without a password (AllowAllAuthenticator: a node "
            "started before the stack had Cassandra roles, or configured so). Restart it "
            "(`stumpcast stack down --only cassandra && stumpcast stack up`), or set "
            "STUMPCAST_CASSANDRA_AUTH=none for a cluster without roles.")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _quiet(), cassandra_session(settings, auth, 10.0) as session:
                yield session
                return
        except Exception as exc:  # noqa: BLE001 - the driver's errors, sorted below
            if auth is None or not login_refused(exc):
                raise
        try:
            with _quiet():
                _bootstrap(settings, auth)
        except Exception as exc:  # noqa: BLE001
            if not login_refused(exc):
                raise
            if time.monotonic() > deadline:
                raise StackError(
                    f"Cassandra refused both our admin role and the built-in superuser for "
                    f"{timeout:g} s. If this data folder was made with other credentials, "
                    f"restore {settings.secrets_dir}/cassandra/admin.password or delete the "
                    "data folder (`stumpcast stack reset`).") from None
            time.sleep(0.5)


def _open_to_anyone(settings: Settings) -> bool:
    """A session without credentials works: the node does not authenticate."""
    try:
        with _quiet(), cassandra_session(settings, None, 10.0):
            return True
    except Exception:  # noqa: BLE001 - refused (what we want) or unreachable (raised later)
        return False


def _bootstrap(settings: Settings, auth: tuple[str, str]) -> None:
    """As the built-in superuser: make ``admin``; then, as ``admin``, drop the built-in."""
    with cassandra_session(settings, BUILTIN, 10.0) as session:
        _upsert_role(session, "admin", auth[1], "SUPERUSER = true AND LOGIN = true")
    with cassandra_session(settings, auth, 10.0) as session:
        session.execute("DROP ROLE IF EXISTS cassandra")


def ensure_roles(session: Any, settings: Settings) -> int:
    """Every service role with its file's password and its grants; returns the grants made.
    The built-in superuser is dropped here too, whatever happened before (a `stack up` that
    stopped between making ``admin`` and dropping it)."""
    session.execute("DROP ROLE IF EXISTS cassandra")
    grants = 0
    for role in CassandraRole:
        if role is CassandraRole.ADMIN:
            continue
        auth = credentials(settings, role)
        assert auth is not None  # only called with auth on
        _upsert_role(session, role.value, auth[1], "LOGIN = true")
        for cql in cassandra_grants(role, settings.cassandra_keyspace):
            session.execute(cql)
            grants += 1
    return grants


def _upsert_role(session: Any, role: str, password: str, options: str) -> None:
    """Create ``role``, or set its password to the file's (a regenerated file takes effect).
    Cassandra refuses a second password change within 5 s ("can only be changed every
    5000ms"): that one was ours, with the same password, and is ignored."""
    exists = session.execute("SELECT role FROM system_auth.roles WHERE role = %s",
                             (role,)).one()
    if exists is None:
        session.execute(f"CREATE ROLE IF NOT EXISTS {role} WITH {options} AND PASSWORD = %s",
                        (password,))
        return
    try:
        session.execute(f"ALTER ROLE {role} WITH PASSWORD = %s", (password,))
    except Exception as exc:  # noqa: BLE001 - the driver's server error
        if "can only be changed every" not in str(exc):
            raise


_quiet = functools.partial(probes._driver_quiet, logging.CRITICAL)  # refused logins expected
