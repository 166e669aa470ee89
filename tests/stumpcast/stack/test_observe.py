"""`stack up --observe` on a private run folder: Prometheus, Alertmanager and the operations
server start, Prometheus scrapes what registers in the run folder, `down` stops all three.

Kafka, Cassandra and Redis are not started (the operations server counts its failed rounds and
stays up); own run folder, own free ports.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from runtime import discovery
from runtime.endpoints import Health, serve_in_thread
from stumpcast.stack.observe_configs import alertmanager_yml, prometheus_yml
from tests.tools import require_tool

if TYPE_CHECKING:
    from conftest import PrivateStack

OBSERVERS = "prometheus,alertmanager,ops"


def _tools() -> None:
    for tool in ("prometheus", "prometheus-alertmanager"):
        require_tool(tool, "make setup")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _targets(prometheus: str) -> dict[str, str]:
    body = _get(f"{prometheus}/api/v1/targets")
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


def _until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s")


def test_configs_render() -> None:
    prom = yaml.safe_load(prometheus_yml(port=1, alertmanager_port=2, rules=Path("/r.yml"),
                                         targets_dir=Path("/run/targets"), interval=0.5))
    assert prom["global"]["scrape_interval"] == "500ms"
    assert prom["global"]["scrape_timeout"] == "500ms"
    assert prom["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["/run/targets/*.json"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:2"]
    am = yaml.safe_load(alertmanager_yml(ops_port=3, fast=False))
    hook = am["receivers"][0]["webhook_configs"][0]
    assert hook == {"url": "http://127.0.0.1:3/ops/api/notify", "send_resolved": True}


@pytest.mark.slow
def test_observe_up_scrapes_the_run_folder_and_down_stops_all(
        private_stack: PrivateStack) -> None:
    _tools()
    env = {"STUMPCAST_STACK_OBSERVE_INTERVAL": "1"}
    up = private_stack.cli("stack", "up", "--only", OBSERVERS, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "operations page: http://127.0.0.1:" in up.stdout
    prometheus = f"http://127.0.0.1:{private_stack.env['STUMPCAST_STACK_PROMETHEUS_PORT']}"
    ops = f"http://127.0.0.1:{private_stack.env['STUMPCAST_OPS_PORT']}"

    # A service of ours: registers in the run folder, Prometheus scrapes it, then it leaves.
    health = Health(lambda: b"stumpcast_streams_held 3\n", lambda: True)
    server = serve_in_thread(health, 0)
    port = server.server_address[1]
    try:
        with discovery.registered(private_stack.run_dir, "streams", port):
            _until(lambda: _targets(prometheus).get("streams") == "up", 30)
            _until(lambda: _targets(prometheus).get("ops") == "up", 30)  # the ops server too
        _until(lambda: "streams" not in _targets(prometheus), 30)
    finally:
        server.shutdown()
    assert _get(f"{ops}/ops/api/state")["targets"]["ops"] == 1

    status = private_stack.cli("stack", "status", env=env)  # listed: this folder started them
    for name in ("prometheus", "alertmanager", "ops"):
        assert any(name in line and "healthy" in line for line in status.stdout.splitlines())
    down = private_stack.cli("stack", "down", env=env)
    assert down.returncode == 0, down.stderr
    for name in ("prometheus", "alertmanager", "ops"):
        assert f"{name}: stopped" in down.stdout, down.stdout
    assert private_stack.processes() == []
    assert discovery.listed(private_stack.run_dir) == []  # ops removed its own file


def test_a_missing_prometheus_is_a_clear_error(private_stack: PrivateStack) -> None:
    env = {"PATH": "/nonexistent"}
    up = private_stack.cli("stack", "up", "--only", "prometheus", env=env)
    assert up.returncode == 1
    assert "prometheus is not on PATH" in up.stderr and "apt-get install prometheus" in up.stderr
