"""Endpoints of the analytics worker and notifier, and the webhooks CLI against real Redis."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest

from streams.analytics.endpoints import serve_in_thread
from streams.analytics.worker import Metrics
from streams.delivery.metrics import NotifierMetrics
from stumpcast.cli import main


@pytest.mark.parametrize("metrics_cls", [Metrics, NotifierMetrics])
def test_metrics_healthz_readyz(metrics_cls):
    ready = {"ok": False}
    server = serve_in_thread(metrics_cls().registry, 0, ready=lambda: ready["ok"])
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/readyz")
        assert err.value.code == 503
        ready["ok"] = True
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        assert b"stumpcast_" in urllib.request.urlopen(f"{base}/metrics").read()
    finally:
        server.shutdown()


@pytest.mark.stack
def test_webhooks_cli_add_list_remove(redis_stack, capsys):
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    assert main(["webhooks", "add", url, "--secret", "s", "--match", "m1", "--no-spoilers",
                 "--session", "sess-1"]) == 0
    hook_id = capsys.readouterr().out.strip()
    assert main(["webhooks", "list"]) == 0
    assert f"{hook_id}  {url}  match=m1 no-spoilers session=sess-1" in capsys.readouterr().out
    assert main(["webhooks", "remove", hook_id]) == 0
    assert main(["webhooks", "remove", hook_id]) == 1
    assert main(["webhooks", "add", url, "--secret", "s", "--no-spoilers"]) == 2


def test_plan_cli_prints_the_fleet(capsys, tmp_path):
    assert main(["plan", "--viewers", "50000000", "--matches", "2",
                 "--benchmarks", str(tmp_path / "none.md")]) == 0
    out = capsys.readouterr().out
    assert "gateway processes" in out and "Redis shards" in out and "Ladder" in out
