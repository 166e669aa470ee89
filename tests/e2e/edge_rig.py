"""The browser tests' edge: two nginx edges in front of a gateway and a media worker, the
analytics worker and the steering server, all on free ports with a run folder of their own.

The edges are started by the real command (``stumpcast stack up --only cdn-a,cdn-b``) in the
rig's run folder; the services are ``python -m stumpcast ...`` children (``e2e_helpers.Proc``).
The media worker's master lists both edges as content-steering pathways and names the steering
server; heartbeats every 2 s (the page's ``beat=2`` and the analytics worker's interval) and a
1 s steering TTL keep the test short. Logs go to ``test-artifacts/e2e/logs``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e_helpers import ROOT, Proc, free_port, http_ok

if TYPE_CHECKING:
    from schemas.settings import Settings

BEAT_S = 2


class Audience:
    """The rest of the audience: one synthetic session per partition of viewer.heartbeats,
    beating every ``BEAT_S`` in a region of its own. The analytics worker calls a window final
    only once every partition has reported it, and a partition without any session never does
    (docs/operations.md, analytics: audiences smaller than the partition count), so a lone
    browser's windows would never be published without these."""

    def __init__(self, kafka: dict[str, Any], match_id: str) -> None:
        self.kafka, self.match_id = kafka, match_id
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="audience", daemon=True)

    def run(self) -> None:
        from confluent_kafka import Producer

        from schemas.heartbeats import make_heartbeat
        from schemas.topology import VIEWER_HEARTBEATS

        producer = Producer({**self.kafka, "linger.ms": 5})
        topic = VIEWER_HEARTBEATS.name
        parts = sorted(producer.list_topics(topic, timeout=10).topics[topic].partitions)
        while not self.stop_event.is_set():
            now = int(time.time() * 1000)
            for p in parts:
                session = f"{self.match_id}-bg-{p}"
                beat = make_heartbeat(session, self.match_id, ts_ms=now, playhead_ms=now - 6000,
                                      region="background", cdn="cdn-b", bitrate_kbps=1000)
                producer.produce(topic, beat, key=session.encode(), partition=p)
            producer.flush(5)
            self.stop_event.wait(BEAT_S)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


class EdgeRig:
    def __init__(self, workdir: Path, match_id: str) -> None:
        self.workdir = workdir
        self.match_id = match_id
        self.ports = {name: free_port() for name in
                      ("gateway", "gateway-admin", "media", "cdn-a", "cdn-b", "steering",
                       "analytics")}
        self.run_dir = workdir / "run"
        a, b = self.url("cdn-a"), self.url("cdn-b")
        self.env = {
            "STUMPCAST_LOG_FORMAT": "text",
            "STUMPCAST_RUN_DIR": str(self.run_dir),
            "STUMPCAST_GATEWAY_PORT": str(self.ports["gateway"]),
            "STUMPCAST_GATEWAY_ADMIN_PORT": str(self.ports["gateway-admin"]),
            "STUMPCAST_GATEWAY_PANIC_DIR": str(workdir / "panic"),
            "STUMPCAST_GATEWAY_PANIC_FLAG": str(workdir / "PANIC"),
            "STUMPCAST_MEDIA_HTTP_PORT": str(self.ports["media"]),
            "STUMPCAST_MEDIA_DIR": str(workdir / "media"),
            # Two small rungs: the bitrate a throttled CDN drives players down to is visible.
            "STUMPCAST_MEDIA_LADDER": "480p,240p",
            "STUMPCAST_MEDIA_PRESET": "ultrafast",
            "STUMPCAST_MEDIA_PATHWAYS": f"cdn-a={a},cdn-b={b}",
            "STUMPCAST_STACK_CDN_A_PORT": str(self.ports["cdn-a"]),
            "STUMPCAST_STACK_CDN_B_PORT": str(self.ports["cdn-b"]),
            "STUMPCAST_STEERING_PORT": str(self.ports["steering"]),
            "STUMPCAST_STEERING_TTL": "1",
            "STUMPCAST_STEERING_HOLD_DOWN": "20",
            "STUMPCAST_STEERING_RAMP_STEP": "6",
            "STUMPCAST_ANALYTICS_METRICS_PORT": str(self.ports["analytics"]),
            "STUMPCAST_HEARTBEAT_INTERVAL": str(BEAT_S),
        }
        self.procs: dict[str, Proc] = {}
        self.audience: Audience | None = None
        self.seeded: Settings | None = None  # the stack whose Redis has the rig's match
        self.views: dict[str, Any] = {}  # its ViewWriter state: the positions written

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def spawn(self, name: str, args: list[str], ready: str | None) -> Proc:
        proc = Proc(f"edge-{name}", args, self.env, ready)
        self.procs[name] = proc
        return proc.start(120)

    def stack(self, *args: str) -> str:
        env = {**os.environ, **self.env}
        out = subprocess.run([sys.executable, "-m", "stumpcast", "stack", *args], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"stack {' '.join(args)}: {out.stderr}")
        return out.stdout.strip()

    def start(self, steering: bool, kafka: Settings | None = None) -> EdgeRig:
        """``kafka``: the test stack's settings; the rig's services use its secrets folder
        (their own Kafka principals) and the audience produces as the admin principal."""
        if kafka is not None:
            self.env["STUMPCAST_SECRETS_DIR"] = str(kafka.secrets_dir)
            self.env["STUMPCAST_SCORER_REGISTRY"] = str(kafka.scorer_registry)
            if self.seeded is None:
                self._seed(kafka)
        shutil.rmtree(self.workdir / "media", ignore_errors=True)
        self.spawn("gateway", ["gateway", "serve"], f"{self.url('gateway')}/readyz")
        self.stack("up", "--only", "cdn-a,cdn-b", "--no-init")
        if steering:
            self.spawn("analytics", ["analytics", "worker"], f"{self.url('analytics')}/readyz")
            self.spawn("steering", ["steering", "serve"], f"{self.url('steering')}/readyz")
            if kafka is not None:
                from tests.kafka_access import admin_config

                self.audience = Audience(admin_config(kafka), self.match_id)
                self.audience.start()
        self.spawn("media", ["media", "worker", "--match-id", self.match_id],
                   f"{self.url('media')}/readyz")
        return self

    def _seed(self, settings: Settings) -> None:
        """The match on air has a scorecard (the first ball of the 2023 final, folded), as a
        live match would: the gateway subscribes a page, and counts its heartbeats, only for
        a match that exists."""
        from bench.gateway.cards import match_cards

        self.seeded = settings
        self.publish(match_cards(settings.cricsheet_dir / "1370353.json")[0])

    def publish(self, card: Any) -> None:
        """The match's next view (``None``: delete it), as the streams worker commits one; in
        a thread of its own, since sync Playwright holds the test's event loop."""
        from bench.gateway.writer import ViewWriter
        from runtime.redisconn import async_redis
        from schemas.store_access import RedisUser

        assert self.seeded is not None, "the rig has no stack to write to"

        async def run(settings: Settings) -> None:
            redis = async_redis(settings, RedisUser.ADMIN)
            writer = ViewWriter(redis)
            writer.state = self.views  # the positions written so far
            try:
                if card is None:
                    await writer.delete(self.match_id)
                else:
                    await writer.publish(self.match_id, card)
            finally:
                await redis.aclose()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run(self.seeded)).result(30)

    def _unseed(self) -> None:
        if self.seeded is not None:
            self.publish(None)
            self.seeded = None

    def page_url(self, region: str, edge: str = "cdn-a") -> str:
        base = self.url(edge)
        return f"{base}/?media={base}&region={region}&beat={BEAT_S}#/match/{self.match_id}"

    def steering_state(self) -> dict[str, Any]:
        import json

        with urllib.request.urlopen(f"{self.url('steering')}/v1/steering/state", timeout=5) as r:
            return dict(json.loads(r.read()))

    def alive(self, name: str) -> bool:
        return http_ok(f"{self.url(name)}/readyz")

    def stop(self) -> None:
        if self.audience is not None:
            self.audience.stop()
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        with contextlib.suppress(RuntimeError):
            self.stack("down")
        self._unseed()
