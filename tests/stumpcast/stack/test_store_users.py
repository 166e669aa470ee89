"""Redis ACL users and Cassandra roles of the local stack: generated, private, least privilege."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from runtime import cassandra, redisconn
from runtime.secrets import SecretMissing, password_path, redis_password_path
from schemas.settings import Settings
from schemas.store_access import REDIS_KEYS, CassandraRole, RedisUser, cassandra_grants
from stumpcast.stack import secrets


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env({}), run_dir=tmp_path,
                               secrets_dir=tmp_path / "secrets",
                               scorer_registry=tmp_path / "secrets" / "scorers.json")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_old_run_folder_gets_the_missing_users_and_keeps_its_own(settings: Settings) -> None:
    old = password_path(settings.secrets_dir, "streams")  # a folder from before #15's stores
    secrets.write_private(old, b"kept")
    secrets.ensure(settings)
    assert old.read_bytes() == b"kept"
    for user in RedisUser:
        auth = redisconn.credentials(settings, user)
        assert auth is not None and auth[0] == user.value and len(auth[1]) >= 32
        assert _mode(redis_password_path(settings.secrets_dir, user)) == 0o600
    for role in CassandraRole:
        auth = cassandra.credentials(settings, role)
        assert auth is not None and auth[0] == role.value
    assert _mode(settings.secrets_dir / "redis") == 0o700


def test_the_redis_acl_file_holds_hashes_and_least_privilege(settings: Settings,
                                                             tmp_path: Path) -> None:
    secrets.ensure(settings)
    acl = tmp_path / "users.acl"
    assert secrets.write_redis_acl(settings, acl) == len(RedisUser)
    text = acl.read_text()
    assert _mode(acl) == 0o600
    for user in RedisUser:  # no password in clear
        assert redisconn.credentials(settings, user)[1] not in text  # type: ignore[index]
    rules = {line.split()[1]: line for line in text.splitlines()}
    assert rules["default"].split()[3] == "off"
    for user in RedisUser:
        rule = rules[user.value]
        if user is RedisUser.ADMIN:
            assert "~*" in rule.split() and "+@all" in rule
            continue
        assert "-@dangerous" in rule and "-@admin" in rule and "~*" not in rule.split()
        assert all(p.startswith(("~stumpcast:", "%R~stumpcast:")) for p in REDIS_KEYS[user])
    # the gateway and the media worker only read
    for user in (RedisUser.GATEWAY, RedisUser.MEDIA):
        assert all(p.startswith("%R~") for p in REDIS_KEYS[user])


def test_only_streams_writes_the_event_store() -> None:
    assert cassandra_grants(CassandraRole.STREAMS, "ks") == [
        "GRANT SELECT ON KEYSPACE ks TO streams", "GRANT MODIFY ON KEYSPACE ks TO streams"]
    assert cassandra_grants(CassandraRole.ANALYST, "ks") == [
        "GRANT SELECT ON KEYSPACE ks TO analyst"]


def test_a_missing_password_names_its_file_and_auth_off_sends_none(settings: Settings) -> None:
    with pytest.raises(SecretMissing, match="redis/gateway.password"):
        redisconn.credentials(settings, RedisUser.GATEWAY)
    with pytest.raises(SecretMissing, match="cassandra/streams.password"):
        cassandra.credentials(settings, CassandraRole.STREAMS)
    off = dataclasses.replace(settings, redis_auth="none", cassandra_auth="none")
    assert redisconn.credentials(off, RedisUser.GATEWAY) is None
    assert cassandra.credentials(off, CassandraRole.STREAMS) is None


def test_bad_auth_settings_are_refused() -> None:
    from schemas.settings import SettingsError

    with pytest.raises(SettingsError, match="STUMPCAST_REDIS_AUTH"):
        Settings.from_env({"STUMPCAST_REDIS_AUTH": "maybe"})
    with pytest.raises(SettingsError, match="STUMPCAST_CASSANDRA_AUTH"):
        Settings.from_env({"STUMPCAST_CASSANDRA_AUTH": "allowall"})
