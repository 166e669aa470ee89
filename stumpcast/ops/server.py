"""The operations server: /ops on the admin port, its JSON API, and the exporter's /metrics.

An aiohttp application on ``STUMPCAST_OPS_PORT`` (loopback by default, never the gateway's
public port):

* ``/ops``: the page (``web/static``) and uPlot from ``web/node_modules`` (``make setup``);
* ``/ops/api/panels``: the charts (``panels.PANELS``); ``/ops/api/panel/<id>?minutes=N``: one
  chart's series from Prometheus' ``query_range``, aligned for uPlot. Only the panels' queries
  are run: the page cannot send PromQL of its own through this port;
* ``/ops/api/alerts``: what Alertmanager has active (not silenced or inhibited);
  ``/ops/api/notifications``: the last notifications Alertmanager posted to
  ``POST /ops/api/notify`` (its webhook receiver, firing and resolved);
* ``/ops/api/state``: panic mode (the gateways' ``stumpcast_gateway_panic``), each job's
  targets up, and the degradation level with its last change (who, when, why; from Redis'
  current flags, ``degradation_of``);
* ``/metrics``, ``/healthz``, ``/readyz`` (``runtime.endpoints``).

Prometheus or Alertmanager being down is a 502 with a JSON error naming which, so the page can
say so instead of drawing empty charts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stumpcast.ops.panels import BY_ID, PANELS, legend_of

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
STATIC = WEB / "static"
VENDOR = {"uPlot.esm.js": WEB / "node_modules" / "uplot" / "dist" / "uPlot.esm.js",
          "uPlot.min.css": WEB / "node_modules" / "uplot" / "dist" / "uPlot.min.css"}
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
MAX_MINUTES = 24 * 60
POINTS = 240  # points per series: the step is the range over this
NOTIFICATIONS_KEPT = 50


class UpstreamError(Exception):
    """Prometheus or Alertmanager did not answer as expected; the message says which."""


@dataclass(frozen=True)
class OpsConfig:
    port: int
    prometheus: str
    alertmanager: str
    run_dir: Path
    host: str = "127.0.0.1"

    @classmethod
    def load(cls, path: Path) -> OpsConfig:
        try:
            doc = json.loads(path.read_text())
            return cls(int(doc["port"]), str(doc["prometheus"]), str(doc["alertmanager"]),
                       Path(doc["run_dir"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not an ops config ({exc})") from None


def align(result: list[dict[str, Any]], legend: str, xs: list[float]
          ) -> list[dict[str, Any]]:
    """Prometheus matrix series as uPlot columns on the shared time axis ``xs`` (None where a
    series has no point)."""
    index = {x: i for i, x in enumerate(xs)}
    out = []
    for series in result:
        values: list[float | None] = [None] * len(xs)
        for t, v in series.get("values", []):
            i = index.get(float(t))
            value = float(v)
            if i is not None and math.isfinite(value):
                values[i] = value
        out.append({"name": legend_of(legend, series.get("metric", {})), "values": values})
    return out


def time_axis(start: float, end: float, step: float) -> list[float]:
    """The instants query_range evaluates at: start, start + step, ... up to end."""
    n = int((end - start) // step) + 1
    return [start + i * step for i in range(n)]


class OpsApp:
    def __init__(self, config: OpsConfig, exporter: Any) -> None:
        self.config = config
        self.exporter = exporter
        self.notifications: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=NOTIFICATIONS_KEPT)
        self.session: Any = None

    # -- upstreams -----------------------------------------------------------------------------

    async def _get(self, base: str, path: str, params: dict[str, str]) -> Any:
        import aiohttp

        name = "prometheus" if base == self.config.prometheus else "alertmanager"
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self.session.get(base + path, params=params) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise UpstreamError(f"{name} answered {resp.status}: {body}")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"{name} at {base} is not answering ({exc!r})") from None

    async def panel_data(self, panel_id: str, minutes: float, now: float) -> dict[str, Any]:
        panel = BY_ID[panel_id]
        step = max(1.0, round(minutes * 60 / POINTS))
        end = math.floor(now / step) * step
        start = end - minutes * 60
        xs = time_axis(start, end, step)
        series: list[dict[str, Any]] = []
        for q in panel.queries:
            body = await self._get(self.config.prometheus, "/api/v1/query_range", {
                "query": q.expr, "start": f"{start:.0f}", "end": f"{end:.0f}",
                "step": f"{step:.0f}"})
            series += align(body["data"]["result"], q.legend, xs)
        return {"id": panel.id, "x": xs, "series": series}

    async def scalar(self, expr: str) -> list[tuple[dict[str, str], float]]:
        body = await self._get(self.config.prometheus, "/api/v1/query", {"query": expr})
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    async def alerts(self) -> list[dict[str, Any]]:
        body = await self._get(self.config.alertmanager, "/api/v2/alerts", {
            "active": "true", "silenced": "false", "inhibited": "false"})
        return [{"name": a["labels"].get("alertname", "?"), "labels": a["labels"],
                 "summary": a.get("annotations", {}).get("summary", ""),
                 "startsAt": a.get("startsAt"), "state": a.get("status", {}).get("state")}
                for a in body]

    async def state(self) -> dict[str, Any]:
        panic = await self.scalar("max(stumpcast_gateway_panic)")
        up = await self.scalar("sum by (job) (up)")
        return {"panic": None if not panic else bool(panic[0][1] >= 1),
                "targets": {m.get("job", "?"): int(v) for m, v in up},
                "degradation": await asyncio.to_thread(self.degradation)}

    def degradation(self) -> dict[str, Any]:
        """The degradation level in force and its last change, from Redis' current flags
        (read as the ``ops`` user); Redis down is said, not a failure of the whole state."""
        try:
            raw = self.exporter.flags()
        except Exception as exc:  # noqa: BLE001 - redis-py's errors, named on the page
            return {"level": None, "error": f"redis: {exc}"[:200]}
        return degradation_of(raw)

    def notified(self, doc: dict[str, Any]) -> int:
        """Keep Alertmanager's webhook payload (version 4): one entry per alert."""
        alerts = doc.get("alerts")
        if not isinstance(alerts, list):
            raise ValueError("not an Alertmanager webhook payload: no alerts list")
        for a in alerts:
            labels = a.get("labels", {}) if isinstance(a, dict) else {}
            self.notifications.appendleft({
                "received": time.time(), "status": a.get("status"),
                "name": labels.get("alertname", "?"), "labels": labels,
                "summary": a.get("annotations", {}).get("summary", "")})
            log.warning("alert %s: %s", a.get("status"), labels.get("alertname"),
                        extra={"labels": labels})
        return len(alerts)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def degradation_of(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Level, whether an operator pinned it, and who changed it when and why: the pin's change
    while a pin is set, else the controller's last level change (level 0 with no change)."""
    from schemas.flags import LEVEL_FLAG, OVERRIDE_FLAG, FlagError, decode, effective_level

    changes = {}
    for value in raw.values():
        with contextlib.suppress(FlagError):
            change = decode(value)
            changes[change.flag] = change
    level = effective_level({k: c.state for k, c in changes.items()})
    pin = changes.get(OVERRIDE_FLAG)
    pinned = pin is not None and pin.state.enabled and pin.state.value is not None
    last = pin if pinned else changes.get(LEVEL_FLAG)
    out: dict[str, Any] = {"level": level, "pinned": pinned}
    if last is not None:
        out.update(who=last.who, why=last.why, when_ms=last.when_ms, version=last.version)
    return out


def panels_doc() -> list[dict[str, Any]]:
    return [{"id": p.id, "title": p.title, "unit": p.unit, "help": p.help} for p in PANELS]
