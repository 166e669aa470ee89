"""Alertmanager from the machine's ``prometheus-alertmanager`` (Debian package), our own child.

Started by ``stack up --observe``. Its gossip (cluster) port is disabled: one instance, loopback
only (an empty ``--cluster.listen-address``; otherwise it binds 9094 on every address). It
posts each notification, firing and resolved, to the operations server (``STUMPCAST_OPS_PORT``).
"""

from __future__ import annotations

import shutil

from stumpcast.stack.errors import ToolMissing
from stumpcast.stack.observe_configs import alertmanager_yml
from stumpcast.stack.probes import http_ready
from stumpcast.stack.server import Port, Server, StartContext


class AlertmanagerServer(Server):
    name = "alertmanager"
    stop_grace = 15.0

    def ports(self) -> list[Port]:
        return [Port(self.settings.stack_alertmanager_port,
                     "STUMPCAST_STACK_ALERTMANAGER_PORT", "http")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.stack_alertmanager_port}"

    def probe(self, timeout: float = 5.0) -> bool:
        return http_ready(f"{self.url}/-/ready", min(timeout, 2.0))

    def render_config(self) -> str:
        return alertmanager_yml(ops_port=self.settings.ops_port,
                                fast=self.settings.stack_observe_timing == "fast")

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise ToolMissing("prometheus-alertmanager is not on PATH. Install it "
                              "(Debian/Ubuntu: apt-get install prometheus-alertmanager).")
        conf = self.layout.conf(self.name) / "alertmanager.yml"
        conf.write_text(self.render_config())
        return [binary, f"--config.file={conf}",
                f"--storage.path={self.layout.data(self.name)}",
                f"--web.listen-address=127.0.0.1:{self.settings.stack_alertmanager_port}",
                "--cluster.listen-address=", "--log.format=json"]
