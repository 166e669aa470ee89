"""``stumpcast_gateway_panic``: 1 while the HTTP API serves the stored scorecards (the panic
flag file, or Redis not answering), which the /ops page and GatewayPanicMode read."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from gateway.http import HttpApi
from gateway.metrics import GatewayMetrics
from gateway.panic import PanicStore


def _api(tmp_path: Path, last_ok: float) -> tuple[HttpApi, GatewayMetrics]:
    stats: dict[str, int] = {}
    metrics = GatewayMetrics("0", lambda: stats)
    feed = SimpleNamespace(last_ok=last_ok, stats=SimpleNamespace(lag_seconds=0.0))
    api = HttpApi(feed, PanicStore(tmp_path / "panic", tmp_path / "PANIC"),  # type: ignore[arg-type]
                  metrics)
    stats["panic"] = int(api.panic_mode())
    return api, metrics


def _panic(metrics: GatewayMetrics) -> float:
    text = metrics.render().decode()
    line = next(x for x in text.splitlines() if x.startswith("stumpcast_gateway_panic{"))
    return float(line.rsplit(" ", 1)[1])


def test_off_while_redis_answers(tmp_path: Path) -> None:
    api, metrics = _api(tmp_path, time.monotonic())
    assert not api.panic_mode() and _panic(metrics) == 0.0


def test_on_with_the_flag_file(tmp_path: Path) -> None:
    (tmp_path / "PANIC").touch()
    api, metrics = _api(tmp_path, time.monotonic())
    assert api.panic_mode() and _panic(metrics) == 1.0


def test_on_when_redis_has_not_answered(tmp_path: Path) -> None:
    api, metrics = _api(tmp_path, time.monotonic() - 60)
    assert api.panic_mode() and _panic(metrics) == 1.0
