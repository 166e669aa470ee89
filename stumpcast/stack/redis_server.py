"""Redis from the machine's redis-server (Debian package), run as our own child process."""

from __future__ import annotations

import shutil

from stumpcast.stack.configs import redis_conf
from stumpcast.stack.errors import ToolMissing
from stumpcast.stack.probes import redis_ready
from stumpcast.stack.server import Port, Server, StartContext


class RedisServer(Server):
    name = "redis"
    stop_grace = 15.0

    def ports(self) -> list[Port]:
        return [Port(self.settings.stack_redis_port, "STUMPCAST_STACK_REDIS_PORT", "client")]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.settings.stack_redis_port}/0"

    def probe(self, timeout: float = 5.0) -> bool:
        return redis_ready(self.url, min(timeout, 2.0))

    def render_config(self) -> str:
        return redis_conf(port=self.settings.stack_redis_port,
                          data_dir=self.layout.data(self.name))

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ToolMissing("redis-server is not on PATH. Install it "
                              "(Debian/Ubuntu: apt-get install redis-server).")
        conf = self.layout.conf(self.name) / "redis.conf"
        conf.write_text(self.render_config())
        return [binary, str(conf)]
