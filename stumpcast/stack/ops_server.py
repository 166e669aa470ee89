"""The operations server (``stumpcast ops serve``) as a server of the local stack.

Started by ``stack up --observe`` after Prometheus and Alertmanager are configured: a Python
process of ours serving the /ops page on the admin port ``STUMPCAST_OPS_PORT``, and /metrics of
what it measures from outside the services (``stumpcast.ops.exporter``). Its settings (Kafka,
Redis) come from the environment ``stack up`` ran in, like every service's; where Prometheus
and Alertmanager are is in ``conf/ops/ops.json``, whose path is in its command line (so ``down``
recognises the process).
"""

from __future__ import annotations

import json
import sys

from stumpcast.stack.probes import http_ready
from stumpcast.stack.server import Port, Server, StartContext


class OpsServer(Server):
    name = "ops"
    stop_grace = 10.0

    def ports(self) -> list[Port]:
        return [Port(self.settings.ops_port, "STUMPCAST_OPS_PORT", "admin")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ops_port}"

    def probe(self, timeout: float = 5.0) -> bool:
        return http_ready(f"{self.url}/healthz", min(timeout, 2.0))

    def render_config(self) -> str:
        s = self.settings
        return json.dumps({
            "port": s.ops_port,
            "prometheus": f"http://127.0.0.1:{s.stack_prometheus_port}",
            "alertmanager": f"http://127.0.0.1:{s.stack_alertmanager_port}",
            "run_dir": str(self.layout.root),
        }, indent=1)

    def prepare(self, ctx: StartContext) -> list[str]:
        conf = self.layout.conf(self.name) / "ops.json"
        conf.write_text(self.render_config())
        return [sys.executable, "-m", "stumpcast", "ops", "serve", "--config", str(conf)]
