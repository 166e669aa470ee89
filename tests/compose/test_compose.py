"""The Compose files name only real settings, their ports agree with them, and the listen
addresses and published ports make the services reachable and nothing more.

Offline checks: there is no Docker engine on the development machines or in CI, so the files
are parsed and checked here, never started (docker-compose.cluster.yml's topology in
test_compose_cluster.py).
"""

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from schemas.settings import Settings, variable_names

HERE = Path(__file__).resolve().parents[2] / "compose"
SINGLE = HERE / "docker-compose.yml"
CLUSTER = HERE / "docker-compose.cluster.yml"
PROMETHEUS = {SINGLE: HERE / "prometheus.yml", CLUSTER: HERE / "prometheus-cluster.yml"}
# The one port each file publishes on every host interface: the public entry.
PUBLIC = {SINGLE: {"gateway"}, CLUSTER: {"lb"}}
# Each listening port setting and the listen address setting that goes with it.
LISTENERS = {
    "STUMPCAST_GATEWAY_PORT": "STUMPCAST_GATEWAY_HOST",
    "STUMPCAST_GATEWAY_ADMIN_PORT": "STUMPCAST_GATEWAY_ADMIN_HOST",
    "STUMPCAST_STREAMS_METRICS_PORT": "STUMPCAST_STREAMS_METRICS_HOST",
    "STUMPCAST_MEDIA_HTTP_PORT": "STUMPCAST_MEDIA_HTTP_HOST",
    "STUMPCAST_ANALYTICS_METRICS_PORT": "STUMPCAST_ANALYTICS_METRICS_HOST",
    "STUMPCAST_NOTIFIER_METRICS_PORT": "STUMPCAST_NOTIFIER_METRICS_HOST",
    "STUMPCAST_OPS_PORT": "STUMPCAST_OPS_HOST",
}


@pytest.fixture(scope="module", params=[SINGLE, CLUSTER], ids=lambda p: p.name)
def compose(request) -> dict:
    data = yaml.safe_load(request.param.read_text())
    data["__path__"] = request.param
    return data


def services_env(compose: dict):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        yield name, {k: str(v) for k, v in env.items()}


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each `ports` entry; "" = every interface."""
    out = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        address = parts[0] if len(parts) == 3 else ""
        out.append((address, int(parts[-2]), int(parts[-1])))
    return out


def replicas(service: dict) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def test_every_stumpcast_variable_is_a_setting(compose):
    known = variable_names()
    named = {k for _, env in services_env(compose) for k in env if k.startswith("STUMPCAST_")}
    assert named, "the compose file should configure stumpcast through STUMPCAST_* settings"
    assert named <= known, f"unknown settings in compose: {sorted(named - known)}"


def test_every_service_environment_parses(compose):
    for _name, env in services_env(compose):
        if any(k.startswith("STUMPCAST_") for k in env):
            Settings.from_env(env)  # raises SettingsError naming the variable


def test_every_listening_port_is_published_or_exposed(compose):
    for name, env in services_env(compose):
        service = compose["services"][name]
        reachable = {c for _, _, c in published(service)}
        reachable |= {int(p) for p in service.get("expose", [])}
        for var in LISTENERS:
            if var in env:
                assert int(env[var]) in reachable, f"{name}: {var} neither published nor exposed"


def test_http_servers_listen_on_every_container_interface(compose):
    """A server on 127.0.0.1 inside its container answers nothing through a published port
    or to Prometheus: each port setting comes with its listen address set to 0.0.0.0."""
    for name, env in services_env(compose):
        for port_var, host_var in LISTENERS.items():
            if port_var in env:
                assert env.get(host_var) == "0.0.0.0", f"{name}: {port_var} without {host_var}"


def test_no_host_port_is_published_twice(compose):
    """Replicas of a service cannot all publish one host port; nor can two services."""
    taken: Counter = Counter()
    for _name, service in compose["services"].items():
        for _, host_port, _ in published(service):
            taken[host_port] += replicas(service)
    assert not [p for p, n in taken.items() if n > 1], taken


def test_only_the_public_entry_listens_on_every_host_interface(compose):
    public = PUBLIC[compose["__path__"]]
    for name, service in compose["services"].items():
        for address, host_port, _ in published(service):
            if name in public:
                continue
            assert address == "127.0.0.1", f"{name} publishes {host_port} on every interface"
    assert all(published(compose["services"][n]) for n in public)


def test_clients_point_at_the_servers_internal_ports(compose):
    services = compose["services"]
    for name, env in services_env(compose):
        if "STUMPCAST_KAFKA_BOOTSTRAP" not in env:
            continue
        settings = Settings.from_env(env)
        for host_port in settings.kafka_bootstrap:
            host, port = host_port.rsplit(":", 1)
            assert f"CLIENT://:{port}" in services[host]["environment"]["KAFKA_LISTENERS"], name
        assert settings.redis_url.split("@")[-1].split("/")[2].split(":")[0] in services
        assert settings.redis_url.endswith(":6379/0")
        for seed in settings.redis_cluster:
            assert seed.rsplit(":", 1)[0] in services and seed.endswith(":6379"), seed
        assert all(h in services for h in settings.cassandra_hosts), name
        assert settings.cassandra_port == 9042


def _scrape_targets(path: Path) -> set[str]:
    scrape = yaml.safe_load(path.read_text())
    targets = set()
    for job in scrape["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets |= set(sc["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    return targets


def test_prometheus_scrapes_every_metrics_port(compose):
    targets = _scrape_targets(PROMETHEUS[compose["__path__"]])
    for name, env in services_env(compose):
        for var in ("STUMPCAST_GATEWAY_ADMIN_PORT", "STUMPCAST_MEDIA_HTTP_PORT",
                    "STUMPCAST_STREAMS_METRICS_PORT", "STUMPCAST_ANALYTICS_METRICS_PORT",
                    "STUMPCAST_NOTIFIER_METRICS_PORT"):
            if var in env:
                assert f"{name}:{env[var]}" in targets, name


@pytest.mark.parametrize("config", sorted(set(PROMETHEUS.values())), ids=lambda p: p.name)
def test_prometheus_accepts_the_config(config, tmp_path):
    """Prometheus's own checker (`promtool check config`, Debian's prometheus package from
    `make system-deps`), with the rules file where the container mounts it replaced by ours."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (make setup installs the prometheus package)"
    copy = tmp_path / config.name
    copy.write_text(config.read_text().replace("/etc/prometheus/rules.yml",
                                               str(HERE / "prometheus" / "rules.yml")))
    done = subprocess.run([promtool, "check", "config", str(copy)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _stores(services: dict, kind: str) -> list[str]:
    return [n for n in services if n == kind or (n.startswith(f"{kind}-")
                                                 and n[len(kind) + 1:].isdigit())]


def test_servers_are_secured_and_not_published(compose):
    """Kafka takes SASL only and denies what no ACL allows; no store publishes a port."""
    services = compose["services"]
    for name in _stores(services, "kafka"):
        kafka = services[name]["environment"]
        protocols = {p.split(":")[1]
                     for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
        assert protocols == {"SASL_PLAINTEXT"}
        assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    stores = [n for k in ("kafka", "cassandra", "redis") for n in _stores(services, k)]
    assert stores
    for name in stores:
        assert not services[name].get("ports"), f"{name} publishes a port"
        command = " ".join(services[name]["command"])
        if name.startswith("redis"):  # the ACL file of the secrets job
            assert "--aclfile" in command
        if name.startswith("cassandra"):  # logins and permissions checked
            assert "PasswordAuthenticator" in command and "CassandraAuthorizer" in command
    for name, env in services_env(compose):
        if "STUMPCAST_KAFKA_BOOTSTRAP" in env:
            assert Settings.from_env(env).kafka_security == "sasl", name
        if "STUMPCAST_REDIS_URL" in env:
            assert Settings.from_env(env).redis_auth == "acl", name
            assert Settings.from_env(env).cassandra_auth == "password", name
            assert any(v.startswith("secrets:") for v in services[name]["volumes"]), name
