"""Redis from the machine's redis-server (Debian package), run as our own child process."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime import redisconn
from runtime.secrets import SecretMissing
from schemas.store_access import RedisUser
from stumpcast.stack import secrets
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
        timeout = min(timeout, 2.0)
        auth = self._admin()
        if redis_ready(self.url, timeout, auth):
            return True
        if (auth is None or self.acl_path is None
                or not self.layout.pid_record(self.name).exists()
                or not redis_ready(self.url, timeout, None)):
            return False
        self._adopt(self.acl_path)
        return redis_ready(self.url, timeout, auth)

    def _adopt(self, acl_path: Path) -> None:
        """Our Redis, started before it had ACL users (an open ``default`` user): give it the
        users now, ``default`` off last, rather than wait for a restart."""
        secrets.write_redis_acl(self.settings, acl_path)
        client = redisconn.connect(self.url, None, socket_timeout=2)
        try:
            lines = [line.split() for line in acl_path.read_text().splitlines() if line]
            for _, name, *rules in sorted(lines, key=lambda w: w[1] == "default"):
                client.execute_command("ACL", "SETUSER", name, *rules)
        finally:
            client.close()

    def _admin(self) -> tuple[str, str] | None:
        """The admin user's credentials; none before `stack up` has generated them (then
        nothing of ours is running, and an unauthenticated PING is refused anyway)."""
        try:
            return redisconn.credentials(self.settings, RedisUser.ADMIN)
        except SecretMissing:
            return None

    def render_config(self) -> str:
        return redis_conf(port=self.settings.stack_redis_port,
                          data_dir=self.layout.data(self.name), acl_file=self.acl_path)

    @property
    def acl_path(self) -> Path | None:
        """The ACL file (users with password hashes), or None with STUMPCAST_REDIS_AUTH=none."""
        if self.settings.redis_auth == "none":
            return None
        return self.layout.conf(self.name) / "users.acl"

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = redis_binary()
        if self.acl_path is not None:
            secrets.ensure(self.settings)
            secrets.write_redis_acl(self.settings, self.acl_path)
        conf = self.layout.conf(self.name) / "redis.conf"
        conf.write_text(self.render_config())
        return [binary, str(conf)]


def redis_binary() -> str:
    """redis-server from PATH (the Makefile installs it), for the single node and the cluster's."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ToolMissing("redis-server is not on PATH. Install it "
                          "(Debian/Ubuntu: apt-get install redis-server).")
    return binary
