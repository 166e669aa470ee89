"""Prometheus from the machine's ``prometheus`` (Debian package), run as our own child process.

Started by ``stack up --observe``. It scrapes what the run folder's ``targets/`` lists (each
service writes its own file while it runs, ``runtime.discovery``), evaluates the rules of
``stumpcast.ops.rules`` (rendered into ``conf/prometheus/rules.yml`` with the timing of
``STUMPCAST_STACK_OBSERVE_TIMING``) and sends alerts to the stack's Alertmanager. Its TSDB is in
``data/prometheus`` and kept by ``down``; two days of retention keep it small.
"""

from __future__ import annotations

import shutil

from runtime.discovery import targets_dir
from stumpcast.ops.rules import Timing, render
from stumpcast.stack.errors import ToolMissing
from stumpcast.stack.observe_configs import prometheus_yml
from stumpcast.stack.probes import http_ready
from stumpcast.stack.server import Port, Server, StartContext

RETENTION = "2d"


class PrometheusServer(Server):
    name = "prometheus"
    stop_grace = 30.0  # it writes the head block's checkpoint on SIGTERM

    def ports(self) -> list[Port]:
        return [Port(self.settings.stack_prometheus_port, "STUMPCAST_STACK_PROMETHEUS_PORT",
                     "http")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.stack_prometheus_port}"

    def probe(self, timeout: float = 5.0) -> bool:
        return http_ready(f"{self.url}/-/ready", min(timeout, 2.0))

    def render_config(self) -> str:
        return prometheus_yml(port=self.settings.stack_prometheus_port,
                              alertmanager_port=self.settings.stack_alertmanager_port,
                              targets_dir=targets_dir(self.settings.run_dir),
                              rules=self.layout.conf(self.name) / "rules.yml",
                              interval=self.settings.stack_observe_interval)

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ToolMissing("prometheus is not on PATH. Install it "
                              "(Debian/Ubuntu: apt-get install prometheus).")
        conf = self.layout.conf(self.name)
        timing = Timing.named(self.settings.stack_observe_timing)
        (conf / "rules.yml").write_text(render(timing))
        (conf / "prometheus.yml").write_text(self.render_config())
        targets_dir(self.settings.run_dir).mkdir(parents=True, exist_ok=True)
        return [binary, f"--config.file={conf / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.layout.data(self.name)}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address=127.0.0.1:{self.settings.stack_prometheus_port}",
                "--web.enable-lifecycle", "--log.format=json"]
