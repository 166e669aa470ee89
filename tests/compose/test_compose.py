"""The Compose file names only real settings, and its ports agree with them."""

from pathlib import Path

import pytest
import yaml

from schemas.settings import Settings, variable_names

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
PROMETHEUS = COMPOSE.with_name("prometheus.yml")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services_env(compose: dict):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        yield name, {k: str(v) for k, v in env.items()}


def test_every_stumpcast_variable_is_a_setting(compose):
    known = variable_names()
    named = {k for _, env in _services_env(compose) for k in env if k.startswith("STUMPCAST_")}
    assert named, "the compose file should configure stumpcast through STUMPCAST_* settings"
    assert named <= known, f"unknown settings in compose: {sorted(named - known)}"


def test_every_service_environment_parses(compose):
    for _name, env in _services_env(compose):
        if any(k.startswith("STUMPCAST_") for k in env):
            Settings.from_env(env)  # raises SettingsError naming the variable


def test_published_ports_agree_with_settings(compose):
    for name, env in _services_env(compose):
        settings = Settings.from_env(env)
        published = {int(p.split(":")[1]) for p in compose["services"][name].get("ports", [])}
        for var, attr in [("STUMPCAST_GATEWAY_PORT", "gateway_port"),
                          ("STUMPCAST_MEDIA_HTTP_PORT", "media_http_port"),
                          ("STUMPCAST_STREAMS_METRICS_PORT", "streams_metrics_port"),
                          ("STUMPCAST_ANALYTICS_METRICS_PORT", "analytics_metrics_port"),
                          ("STUMPCAST_NOTIFIER_METRICS_PORT", "notifier_metrics_port")]:
            if var in env:
                assert getattr(settings, attr) in published, f"{name}: {var} not published"


def test_clients_point_at_the_servers_internal_ports(compose):
    services = compose["services"]
    env = dict(_services_env(compose))["gateway"]
    settings = Settings.from_env(env)
    kafka_port = int(settings.kafka_bootstrap[0].rsplit(":", 1)[1])
    assert f"CLIENT://:{kafka_port}" in services["kafka"]["environment"]["KAFKA_LISTENERS"]
    assert settings.redis_url.endswith(":6379/0")
    assert settings.cassandra_port == 9042


def test_prometheus_scrapes_the_metrics_ports(compose):
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for job in scrape["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    for name, env in _services_env(compose):
        for var in ("STUMPCAST_GATEWAY_ADMIN_PORT", "STUMPCAST_MEDIA_HTTP_PORT",
                    "STUMPCAST_STREAMS_METRICS_PORT", "STUMPCAST_ANALYTICS_METRICS_PORT",
                    "STUMPCAST_NOTIFIER_METRICS_PORT"):
            if var in env:
                assert f"{name}:{env[var]}" in targets


def test_servers_are_secured_and_not_published(compose):
    """Kafka takes SASL only and denies what no ACL allows; no server publishes a port."""
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    protocols = {p.split(":")[1] for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert protocols == {"SASL_PLAINTEXT"}
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for name in ("kafka", "cassandra", "redis"):
        assert not services[name].get("ports"), f"{name} publishes a port"
    # Redis with the ACL file of the secrets job; Cassandra checking logins and permissions
    assert "--aclfile" in " ".join(services["redis"]["command"])
    cassandra = " ".join(services["cassandra"]["command"])
    assert "PasswordAuthenticator" in cassandra and "CassandraAuthorizer" in cassandra
    for name, env in _services_env(compose):
        if "STUMPCAST_KAFKA_BOOTSTRAP" in env:
            assert Settings.from_env(env).kafka_security == "sasl", name
        if "STUMPCAST_REDIS_URL" in env:
            assert Settings.from_env(env).redis_auth == "acl", name
            assert Settings.from_env(env).cassandra_auth == "password", name
            assert any(v.startswith("secrets:") for v in services[name]["volumes"]), name
