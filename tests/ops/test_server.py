"""The operations server without Prometheus: routes, bad input, upstream errors, the webhook,
and aligning query_range results for uPlot."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from schemas.settings import Settings
from stumpcast.ops.exporter import Exporter
from stumpcast.ops.routes import build_app
from stumpcast.ops.server import VENDOR, OpsApp, OpsConfig, align, time_axis


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the socket is


def test_time_axis_and_align() -> None:
    xs = time_axis(100.0, 130.0, 10.0)
    assert xs == [100.0, 110.0, 120.0, 130.0]
    result = [{"metric": {"match": "m1"}, "values": [[110, "2.5"], [130, "NaN"], [999, "1"]]},
              {"metric": {"match": "m2"}, "values": [[100, "0"]]}]
    assert align(result, "{match}", xs) == [
        {"name": "m1", "values": [None, 2.5, None, None]},
        {"name": "m2", "values": [0.0, None, None, None]}]


def test_ops_config_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "ops.json"
    bad.write_text('{"port": 1}')
    with pytest.raises(ValueError, match="not an ops config"):
        OpsConfig.load(bad)
    with pytest.raises(ValueError, match="not an ops config"):
        OpsConfig.load(tmp_path / "missing.json")


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    from aiohttp.test_utils import TestClient, TestServer

    config = OpsConfig(0, f"http://127.0.0.1:{closed_port()}",
                       f"http://127.0.0.1:{closed_port()}", tmp_path)
    ops = OpsApp(config, Exporter(Settings.from_env({})))
    async with TestClient(TestServer(build_app(ops))) as c:
        yield c
    await ops.close()


async def test_the_page_and_its_files(client: Any) -> None:
    page = await client.get("/ops")
    assert page.status == 200 and "stumpcast operations" in await page.text()
    js = await client.get("/ops/app/ops.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert (await client.get("/ops/app/../server.py")).status == 404
    assert (await client.get("/ops/app/nope.js")).status == 404
    vendor = await client.get("/ops/vendor/uPlot.esm.js")
    assert vendor.status == (200 if VENDOR["uPlot.esm.js"].exists() else 503)
    assert (await client.get("/ops/vendor/other.js")).status == 404


async def test_panels_and_bad_input(client: Any) -> None:
    panels = await (await client.get("/ops/api/panels")).json()
    assert [p["id"] for p in panels][:3] == ["latency", "staleness", "lag"]
    unknown = await client.get("/ops/api/panel/nope")
    assert unknown.status == 404 and (await unknown.json())["error"] == "unknown_panel"
    for minutes in ("abc", "0", "100000"):
        bad = await client.get(f"/ops/api/panel/lag?minutes={minutes}")
        assert bad.status == 400 and (await bad.json())["error"] == "bad_minutes", minutes


async def test_upstreams_down_are_named(client: Any) -> None:
    for path, name in (("/ops/api/panel/lag", "prometheus"), ("/ops/api/state", "prometheus"),
                       ("/ops/api/alerts", "alertmanager")):
        reply = await client.get(path)
        body = await reply.json()
        assert reply.status == 502 and body["error"] == "upstream_unavailable", body
        assert name in body["message"]


async def test_the_alertmanager_webhook(client: Any) -> None:
    payload = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "ViewStale", "match": "m1"},
         "annotations": {"summary": "match m1 behind"}}]}
    kept = await client.post("/ops/api/notify", data=json.dumps(payload))
    assert kept.status == 200 and (await kept.json()) == {"kept": 1}
    notes = await (await client.get("/ops/api/notifications")).json()
    assert notes[0]["name"] == "ViewStale" and notes[0]["labels"]["match"] == "m1"
    for body in (b"not json", b"[]", b'{"no": "alerts"}'):
        bad = await client.post("/ops/api/notify", data=body)
        assert bad.status == 400 and (await bad.json())["error"] == "bad_notification", body


async def test_health_and_metrics(client: Any) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503  # the exporter has not run a round
    text = await (await client.get("/metrics")).text()
    assert "stumpcast_live_matches 0.0" in text


def test_the_degradation_shown_is_the_level_in_force_and_its_last_change() -> None:
    from schemas.flags import LEVEL_FLAG, OVERRIDE_FLAG, FlagChange, FlagState
    from stumpcast.ops.server import degradation_of

    assert degradation_of({}) == {"level": 0, "pinned": False}
    level = FlagChange(LEVEL_FLAG, FlagState(value=1), "degrade-controller@vm", 1_000,
                       "loop_lag_ms 80 >= 50 (level 1 threshold)").with_version(7)
    raw = {LEVEL_FLAG.encode(): level.encode(), b"junk": b"not a change"}
    assert degradation_of(raw) == {"level": 1, "pinned": False, "who": "degrade-controller@vm",
                                   "why": "loop_lag_ms 80 >= 50 (level 1 threshold)",
                                   "when_ms": 1_000, "version": 7}
    pin = FlagChange(OVERRIDE_FLAG, FlagState(value=0), "ana", 2_000, "false alarm")
    got = degradation_of({**raw, OVERRIDE_FLAG.encode(): pin.encode()})
    assert (got["level"], got["pinned"], got["who"], got["why"]) == (0, True, "ana",
                                                                     "false alarm")
