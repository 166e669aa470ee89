"""The Kubernetes manifests in deploy/k8s are valid objects of a real Kubernetes API, checked
offline against its OpenAPI schemas (the kubernetes-validate package bundles them; strict:
an unknown or misspelt field fails), and hold the invariants the services need: both probes on
a declared port, a disruption budget per multi-replica workload, the gateway autoscaled on
its connections, no inline credential, every setting a real one."""

import re
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import ValidationError, validate

from runtime.secrets import (
    cassandra_password_path,
    gateway_session_key_path,
    password_path,
    redis_password_path,
)
from schemas.settings import Settings, variable_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ADAPTER = ROOT / "deploy" / "prometheus-adapter-rules.yaml"
KUBERNETES = "1.31.0"  # the API version the manifests target (a 1.31+ cluster)
WORKLOADS = ("Deployment", "StatefulSet")
# What each service must have, as the issue plans it: replicas and the secrets it reads.
PLAN = {
    "streams": (3, {password_path(Path(), "streams"), redis_password_path(Path(), "streams"),
                    cassandra_password_path(Path(), "streams"), Path("scorers.json")}),
    "gateway": (2, {password_path(Path(), "gateway"), redis_password_path(Path(), "gateway"),
                    gateway_session_key_path(Path())}),
    "analytics": (2, {password_path(Path(), "analytics"),
                      redis_password_path(Path(), "analytics")}),
    "notifier": (2, {password_path(Path(), "notifier"), redis_password_path(Path(), "notifier")}),
    "media": (1, {password_path(Path(), "media"), redis_password_path(Path(), "media")}),
}


def load() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


DOCS = load()


def of_kind(*kinds: str) -> list[dict]:
    return [d for d in DOCS if d["kind"] in kinds]


def workload(name: str) -> dict:
    (found,) = [d for d in of_kind(*WORKLOADS) if d["metadata"]["name"] == name]
    return found


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_a_valid_kubernetes_object(doc):
    validate(doc, KUBERNETES, strict=True)  # raises ValidationError naming the field


def test_the_schema_check_catches_a_misspelt_field():
    doc = yaml.safe_load(yaml.safe_dump(workload("gateway")))
    containers(doc)[0]["readinessprobe"] = containers(doc)[0].pop("readinessProbe")
    with pytest.raises(ValidationError, match="readinessprobe"):
        validate(doc, KUBERNETES, strict=True)


def test_every_service_planned_runs_with_its_replicas():
    assert {d["metadata"]["name"] for d in of_kind(*WORKLOADS)} == set(PLAN)
    for name, (replicas, _) in PLAN.items():
        assert workload(name)["spec"]["replicas"] == replicas, name


def test_every_container_has_both_probes_on_a_declared_port():
    for doc in of_kind(*WORKLOADS):
        for c in containers(doc):
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = c[probe]["httpGet"]
                assert get["path"] == path, (c["name"], probe)
                assert get["port"] in ports or get["port"] in ports.values(), (c["name"], probe)


def _env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def test_probes_hit_the_port_that_serves_health_and_it_listens_on_every_interface():
    """The gateway's probes on its admin port, the workers' on their metrics port; each with
    its listen address set to 0.0.0.0 (the default 127.0.0.1 answers no kubelet)."""
    expect = {"gateway": ("STUMPCAST_GATEWAY_ADMIN_PORT", "STUMPCAST_GATEWAY_ADMIN_HOST"),
              "streams": ("STUMPCAST_STREAMS_METRICS_PORT", "STUMPCAST_STREAMS_METRICS_HOST"),
              "analytics": ("STUMPCAST_ANALYTICS_METRICS_PORT",
                            "STUMPCAST_ANALYTICS_METRICS_HOST"),
              "notifier": ("STUMPCAST_NOTIFIER_METRICS_PORT", "STUMPCAST_NOTIFIER_METRICS_HOST"),
              "media": ("STUMPCAST_MEDIA_HTTP_PORT", "STUMPCAST_MEDIA_HTTP_HOST")}
    for name, (port_var, host_var) in expect.items():
        (c,) = containers(workload(name))
        env = _env(c)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert ports[c[probe]["httpGet"]["port"]] == int(env[port_var]), (name, probe)
        assert env[host_var] == "0.0.0.0", name
    gateway_env = _env(containers(workload("gateway"))[0])
    assert gateway_env["STUMPCAST_GATEWAY_HOST"] == "0.0.0.0"


def test_a_disruption_budget_covers_each_multi_replica_workload():
    budgets = of_kind("PodDisruptionBudget")
    for doc in of_kind(*WORKLOADS):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if matches(b["spec"]["selector"], labels)]
        if doc["spec"]["replicas"] > 1:
            assert len(covering) == 1, doc["metadata"]["name"]
            spec = covering[0]["spec"]
            # a budget that allows no disruption blocks every node drain
            allowed = (doc["spec"]["replicas"] - spec["minAvailable"] if "minAvailable" in spec
                       else spec["maxUnavailable"])
            assert allowed >= 1, doc["metadata"]["name"]


def test_the_gateway_scales_on_its_connections():
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "gateway"}
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    # the gauge the gateways export, and the adapter rule that serves it per pod
    assert f'"{name.removeprefix("stumpcast_gateway_")}"' in (
        ROOT / "gateway" / "metrics.py").read_text()
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]
    assert any(r["name"]["as"] == name and name in r["seriesQuery"] for r in rules)


def test_services_select_pods_and_target_declared_ports():
    for svc in of_kind("Service"):
        pods = [d for d in of_kind(*WORKLOADS)
                if matches({"matchLabels": svc["spec"]["selector"]},
                           d["spec"]["template"]["metadata"]["labels"])]
        assert pods, svc["metadata"]["name"]
        names = {p["name"] for d in pods for c in containers(d) for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, svc["metadata"]["name"]
    streams = workload("streams")
    assert streams["spec"]["serviceName"] in {s["metadata"]["name"] for s in of_kind("Service")}


def test_credentials_come_from_secrets_mounted_where_the_services_look():
    assert not of_kind("Secret"), "credentials are created by the operator, never checked in"
    for name, (_, wanted) in PLAN.items():
        spec = workload(name)["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volume = next(v for v in spec["volumes"] if "secret" in v)
        assert mounts[volume["name"]]["mountPath"] == "/secrets"
        assert mounts[volume["name"]].get("readOnly") is True
        assert {Path(i["path"]) for i in volume["secret"]["items"]} == wanted, name
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert not re.search(r"(?i)password\s*[:=]\s*\S", text)


def test_every_container_has_requests_and_limits_and_runs_unprivileged():
    for doc in of_kind(*WORKLOADS):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_settings_are_real_and_parse():
    (config,) = [d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "stumpcast-settings"]
    known = variable_names()
    for doc in of_kind(*WORKLOADS):
        for c in containers(doc):
            assert c["envFrom"] == [{"configMapRef": {"name": "stumpcast-settings"}}]
            env = {**config["data"], **_env(c)}
            assert {k for k in env if k.startswith("STUMPCAST_")} <= known, c["name"]
            settings = Settings.from_env(env)
            assert settings.cassandra_consistency == "LOCAL_QUORUM"
            assert settings.kafka_replication_factor == 3
            assert len(settings.redis_cluster) >= 3
