"""/metrics, /healthz and /readyz: one protocol (``Health.answer``), served the three ways."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from analytics.metrics import Metrics as AnalyticsMetrics
from notifier.metrics import NotifierMetrics
from runtime.endpoints import PROMETHEUS, Health, Readiness, application, serve, serve_in_thread


def _registry() -> CollectorRegistry:
    r = CollectorRegistry()
    Counter("stumpcast_test_things", "Things", registry=r).inc(3)
    return r


def test_answers_without_io():
    state = {"ok": False}
    health = Health.of_registry(_registry(), ready=lambda: state["ok"],
                                status=lambda: {"state": "running"})
    metrics = health.answer("/metrics")
    assert metrics is not None and metrics.status == 200 and metrics.content_type == PROMETHEUS
    assert b"stumpcast_test_things_total 3.0" in metrics.body
    alive = health.answer("/healthz")
    assert alive is not None and alive.status == 200
    assert json.loads(alive.body) == {"status": "ok", "state": "running"}
    not_ready = health.answer("/readyz?verbose=1")
    assert not_ready is not None and not_ready.status == 503
    assert json.loads(not_ready.body) == {"ready": False, "state": "running"}
    state["ok"] = True
    assert health.answer("/readyz/").status == 200  # type: ignore[union-attr]
    assert health.answer("/v1/matches") is None


def test_readiness_says_why():
    health = Health(lambda: b"", lambda: Readiness(False, {"problems": ["redis down"]}))
    reply = health.answer("/readyz")
    assert reply is not None and reply.status == 503
    assert json.loads(reply.body) == {"ready": False, "problems": ["redis down"]}


@pytest.mark.parametrize("registry", [_registry, lambda: AnalyticsMetrics().registry,
                                      lambda: NotifierMetrics().registry])
def test_served_in_a_thread(registry):
    ready = {"ok": False}
    server = serve_in_thread(Health.of_registry(registry(), ready=lambda: ready["ok"]), 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/readyz")
        assert err.value.code == 503
        ready["ok"] = True
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        assert b"stumpcast_" in urllib.request.urlopen(f"{base}/metrics").read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/nothing")
        assert err.value.code == 404
    finally:
        server.shutdown()


async def test_served_on_the_running_loop():
    import asyncio
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = await serve(application(Health.of_registry(_registry(), ready=lambda: True)), port)

    def get(path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, resp.read()

    try:
        loop = asyncio.get_running_loop()
        assert (await loop.run_in_executor(None, get, "/readyz"))[0] == 200
        status, body = await loop.run_in_executor(None, get, "/metrics")
        assert status == 200 and b"stumpcast_test_things_total" in body
    finally:
        await runner.cleanup()
