"""Observability on the real stack: the freshness alert fires and resolves, and /ops draws.

A private run folder runs Prometheus, Alertmanager and the operations server (`stumpcast stack
up --observe --only prometheus,alertmanager,ops`) with the fast timing (rule thresholds and
`for` divided by 12, scrapes and evaluations every second). Its ``targets`` folder is a link to
the session's run folder's, where the e2e services (streams worker, gateway) register, so
Prometheus scrapes them as it would on the user's stack. The 2023 IPL final (Cricsheet, ODC-BY
1.0) is replayed live under a test match id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ARTIFACTS, ROOT, Proc, Services, free_port, missing, shot, wait_for

from runtime.discovery import targets_dir
from schemas.settings import Settings
from stumpcast.ops.rules import FAST_DIVISOR

pytestmark = [pytest.mark.stack, pytest.mark.slow]

OBSERVERS = "prometheus,alertmanager,ops"
STALE_AFTER = 120 / FAST_DIVISOR   # ViewStale's threshold in the fast timing (10 s)
FOR = 60 / FAST_DIVISOR            # and its `for` (5 s)
INTERVAL = 1.0                     # scrape and evaluation interval of the test's Prometheus
MAX_GAP = 3.0                      # live-replay: the longest gap between two events


@dataclass
class Observe:
    env: dict[str, str]
    prometheus: str
    alertmanager: str
    ops: str

    def get(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": expr})
        body = self.get(f"{self.prometheus}/api/v1/query?{q}")
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def alerts(self, name: str, match_id: str) -> list[dict[str, Any]]:
        """Alertmanager's active alerts ``name`` for ``match_id``."""
        q = urllib.parse.urlencode({"filter": f'alertname="{name}"', "active": "true"})
        return [a for a in self.get(f"{self.alertmanager}/api/v2/alerts?{q}")
                if a["labels"].get("match") == match_id]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stumpcast", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def observe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observe]:
    for tool in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (make setup)")
    run = tmp_path_factory.mktemp("observe") / "run"
    run.mkdir()
    settings = Settings.from_env()
    # Absolute: `make test` names its run folder relative to the checkout (.run-test), and
    # the links and paths below are read from other folders.
    shared = targets_dir(settings.run_dir).resolve()  # where the e2e services register
    shared.mkdir(parents=True, exist_ok=True)
    (run / "targets").symlink_to(shared, target_is_directory=True)
    ports = {k: str(free_port()) for k in ("PROMETHEUS", "ALERTMANAGER")}
    # The observers run in a folder of their own, but the exporter reads the test stack's
    # Kafka as its admin principal: its credentials stay those of the stack's run folder.
    env = {**os.environ, "STUMPCAST_RUN_DIR": str(run), "STUMPCAST_LOG_FORMAT": "text",
           "STUMPCAST_SECRETS_DIR": str(settings.secrets_dir.resolve()),
           "STUMPCAST_STACK_PROMETHEUS_PORT": ports["PROMETHEUS"],
           "STUMPCAST_STACK_ALERTMANAGER_PORT": ports["ALERTMANAGER"],
           "STUMPCAST_OPS_PORT": str(free_port()),
           "STUMPCAST_STACK_OBSERVE_TIMING": "fast",
           "STUMPCAST_STACK_OBSERVE_INTERVAL": str(INTERVAL)}
    up = _cli(env, "stack", "up", "--only", OBSERVERS)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield Observe(env, f"http://127.0.0.1:{ports['PROMETHEUS']}",
                      f"http://127.0.0.1:{ports['ALERTMANAGER']}",
                      f"http://127.0.0.1:{env['STUMPCAST_OPS_PORT']}")
    finally:
        down = _cli(env, "stack", "down", "--only", OBSERVERS)
        for name in ("prometheus", "alertmanager", "ops"):
            log = run / "logs" / f"{name}.log"
            if log.exists():
                ARTIFACTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
                shutil.copy(log, ARTIFACTS / "logs" / f"observe-{name}.log")
        assert down.returncode == 0, down.stdout + down.stderr


def _streams(e2e: Services) -> Proc:
    return next(p for p in reversed(e2e.procs) if p.name.startswith("streams") and p.running())


def _until(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_the_freshness_alert_fires_when_the_workers_stop_and_resolves(e2e, replay,
                                                                      observe) -> None:
    match_id = f"e2e-ops-{uuid.uuid4().hex[:8]}"
    replay(match_id, speed=60)
    staleness = f'stumpcast_view_staleness_seconds{{match="{match_id}"}}'
    _until("the exporter sees the match and its view up to date",
           lambda: any(float(r["value"][1]) == 0 for r in observe.query(staleness)), 60)
    assert not observe.alerts("ViewStale", match_id)

    _streams(e2e).stop()  # every streams worker of the group: the one the session runs
    stopped = time.monotonic()
    fired = _until("ViewStale firing in Alertmanager",
                   lambda: observe.alerts("ViewStale", match_id), 60)
    took = time.monotonic() - stopped
    behind = max(float(r["value"][1]) for r in observe.query(staleness))
    print(f"ViewStale in Alertmanager {took:.1f} s after the worker stopped; "
          f"staleness then {behind:.1f} s")
    # No earlier than the rule allows: staleness above the threshold for the whole `for`
    # (less one scrape and one evaluation), and no later than the window plus the time the
    # first unapplied event may take to come (MAX_GAP) and a few evaluations.
    assert behind >= STALE_AFTER + FOR - 2 * INTERVAL, (behind, fired)
    assert took <= STALE_AFTER + FOR + MAX_GAP + 10, took
    assert fired[0]["labels"]["severity"] == "page"
    assert fired[0]["status"]["state"] == "active"

    port = e2e.env["STUMPCAST_STREAMS_METRICS_PORT"]
    e2e.spawn("streams-after-ops", ["streams", "worker"], f"http://127.0.0.1:{port}/readyz")
    restarted = time.monotonic()
    _until("ViewStale resolved in Alertmanager",
           lambda: not observe.alerts("ViewStale", match_id), 90)
    print(f"resolved {time.monotonic() - restarted:.1f} s after the worker was ready again")
    assert all(float(r["value"][1]) < STALE_AFTER for r in observe.query(staleness))

    def notified(status: str) -> bool:
        notes = observe.get(f"{observe.ops}/ops/api/notifications")
        return any(n["name"] == "ViewStale" and n["labels"].get("match") == match_id
                   and n["status"] == status for n in notes)

    # Alertmanager's webhook reached the operations server, firing and then resolved.
    _until("the firing and resolved notifications at /ops/api/notifications",
           lambda: notified("firing") and notified("resolved"), 30)


CHARTED = ("latency", "staleness", "lag", "events", "connections")


def test_ops_page_charts_a_live_replay(page, browser, e2e, replay, observe) -> None:
    match_id = f"e2e-ops-page-{uuid.uuid4().hex[:8]}"
    replay(match_id, speed=60)
    viewer = browser.new_context(viewport={"width": 800, "height": 600}).new_page()
    viewer.goto(e2e.page_url(match_id))  # a subscriber: deliveries, connections, latency
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{observe.ops}/ops?minutes=3")
    wait_for(page, "(ids) => window.stumpcastOps && ids.every("
             "(id) => (window.stumpcastOps.points[id] || 0) >= 5)", 120, list(CHARTED))
    time.sleep(6)  # one more refresh: longer lines in the picture
    points = page.evaluate("() => window.stumpcastOps.points")
    assert all(points[p] > 0 for p in CHARTED), points
    assert page.locator(".chart canvas").count() >= len(CHARTED)
    assert "panic: off" in page.locator("#panic").inner_text()
    assert "streams up" in page.locator("#targets").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ops-page.png"), full_page=True)
    shot(viewer, "ops-viewer")
    viewer.context.close()
    assert not page.errors, page.errors


def test_every_dashboard_query_runs_on_prometheus(observe) -> None:
    """The Grafana panels' PromQL is valid for the Prometheus the stack runs (2.42)."""
    from stumpcast.ops.dashboards import dashboard, queries

    for expr in queries(dashboard()):
        observe.query(expr)  # asserts status success
    body = observe.get(f"{observe.prometheus}/api/v1/rules")
    health = {r["name"]: r["health"] for g in body["data"]["groups"] for r in g["rules"]}
    assert set(health.values()) == {"ok"}, health
    assert Path(ROOT / "compose" / "grafana" / "stumpcast-overview.json").exists()
