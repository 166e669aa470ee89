"""Settings: defaults follow the local stack, cluster values parse, bad ones are named."""

import pytest

from schemas.settings import Settings, SettingsError, documented


def test_defaults_point_at_the_local_stack():
    s = Settings.from_env({})
    assert s.kafka_bootstrap == ("127.0.0.1:19092",)
    assert s.redis_url == "redis://127.0.0.1:16379/0"
    assert s.cassandra_port == s.stack_cassandra_port == 19042


def test_a_real_cluster_configuration():
    s = Settings.from_env({
        "STUMPCAST_KAFKA_BOOTSTRAP": "k1:9092, k2:9092,k3:9092",
        "STUMPCAST_CASSANDRA_HOSTS": "c1,c2,c3",
        "STUMPCAST_CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3,dc2=3",
        "STUMPCAST_REDIS_URL": "rediss://cache.internal:6380/2",
    })
    assert s.kafka_bootstrap == ("k1:9092", "k2:9092", "k3:9092")
    assert s.kafka_bootstrap_str == "k1:9092,k2:9092,k3:9092"
    assert s.cassandra_hosts == ("c1", "c2", "c3")
    assert s.cassandra_replication == {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3}


@pytest.mark.parametrize("var, value", [
    ("STUMPCAST_KAFKA_BOOTSTRAP", "kafka"),
    ("STUMPCAST_KAFKA_BOOTSTRAP", "k:99999"),
    ("STUMPCAST_REDIS_URL", "http://x"),
    ("STUMPCAST_CASSANDRA_REPLICATION", "SimpleStrategy"),
    ("STUMPCAST_CASSANDRA_REPLICATION", "Quorum:3"),
    ("STUMPCAST_GATEWAY_PORT", "eighty"),
    ("STUMPCAST_LOG_LEVEL", "LOUD"),
    ("STUMPCAST_STACK_START_TIMEOUT", "-1"),
    ("STUMPCAST_MEDIA_HLS", "fast"),
    ("STUMPCAST_MEDIA_PART_TARGET", "0.01"),
    ("STUMPCAST_MEDIA_LL_MAX_BLOCKED", "0"),
])
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_every_setting_is_documented():
    for var, _default, doc in documented():
        assert var.startswith("STUMPCAST_") and len(doc) > 10
