"""The Prometheus rules: generated file in step, valid, every rule unit-tested by promtool, and
every metric they read registered by a service (or recorded by another rule)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stumpcast.ops import catalog, rules
from tests.ops.promql import BUILTIN, metric_names
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "compose" / "prometheus" / "rules.yml"
TESTS = RULES.with_name("tests.yml")
def promtool() -> str:
    return require_tool("promtool", "make setup installs the prometheus package")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_checked_in_rules_are_the_generated_ones() -> None:
    assert RULES.read_text() == rules.render(), (
        "compose/prometheus/rules.yml is stale: stumpcast ops rules > compose/prometheus/rules.yml")


@pytest.mark.parametrize("timing", ["standard", "fast"])
def test_promtool_check_rules(tmp_path: Path, timing: str) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rules.render(rules.Timing.named(timing)))
    result = run("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 31 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_fail_on_other_thresholds(tmp_path: Path) -> None:
    """They test the rules' numbers, not just their names: the fast timing (thresholds and
    `for` divided by 12) must fail them."""
    (tmp_path / "rules.yml").write_text(rules.render(rules.Timing.named("fast")))
    shutil.copy(TESTS, tmp_path / "tests.yml")
    result = run("test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode != 0
    for alert in ("ViewStale", "StreamsGroupEmpty", "GatewayPanicMode", "ServiceDown",
                  "DeadLettersFromValidSources", "DeliveryLatencyBudgetBurn"):
        assert f"alertname: {alert}" in result.stdout + result.stderr, alert


def test_every_rule_has_a_unit_test() -> None:
    records, alerts = rules.names(yaml.safe_load(RULES.read_text()))
    doc = yaml.safe_load(TESTS.read_text())
    exprs = " ".join(t["expr"] for g in doc["tests"] for t in g.get("promql_expr_test", []))
    tested_alerts = {t["alertname"] for g in doc["tests"] for t in g.get("alert_rule_test", [])}
    firing = {t["alertname"] for g in doc["tests"] for t in g.get("alert_rule_test", [])
              if t["exp_alerts"]}
    quiet = {t["alertname"] for g in doc["tests"] for t in g.get("alert_rule_test", [])
             if not t["exp_alerts"]}
    assert {r for r in records if r not in exprs} == set()
    assert alerts == tested_alerts
    assert alerts == firing == quiet, "each alert: a case where it fires and one where not"


def test_rules_read_only_registered_or_recorded_series() -> None:
    doc = yaml.safe_load(RULES.read_text())
    records, _ = rules.names(doc)
    known = catalog.series_names() | records | BUILTIN
    used = {n for g in doc["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    assert used - known == set()


def test_fast_timing_divides_by_twelve() -> None:
    fast = rules.Timing.named("fast")
    assert fast.duration(120) == "10s" and fast.duration(60) == "5s"
    assert rules.Timing().duration(120) == "2m" and rules.Timing().duration(900) == "15m"
    with pytest.raises(ValueError, match="unknown timing"):
        rules.Timing.named("slow")
