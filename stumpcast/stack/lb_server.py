"""HAProxy (Debian package) in front of the gateway nodes: `stack up --only lb`.

One frontend on ``STUMPCAST_STACK_LB_PORT``; the backend has every gateway node of
``STUMPCAST_STACK_LB_GATEWAYS``, each checked with ``GET /readyz`` (Redis answers and the feed is
not lagging: a node that cannot serve current views gets no new clients). Choices, after the
HAProxy 2.6 configuration manual as summarised in cluster.md §6:

* ``mode http``: after the WebSocket upgrade the connection is a tunnel and ``timeout tunnel``
  (1 h) replaces the client/server timeouts, so an idle viewer is not cut;
  ``timeout client-fin`` closes half-closed sockets.
* ``balance leastconn``: sessions last a whole match; round robin skews after a restart.
* ``inter 1s fall 3 rise 2`` and ``timeout check 3s``: a node that stops answering /readyz
  leaves rotation after ~3-10 s and gets no new clients. Its open tunnels stay: readiness
  means "send no new traffic", as a Kubernetes readiness probe does. A SIGKILLed node's
  sockets are reset at once, so its clients reconnect (to the other node) and resume by
  position; HAProxy never migrates a WebSocket. ``on-marked-down shutdown-sessions`` was
  tried and dropped. With it, a gateway that was briefly not ready (a Redis master failing
  over, or the reconnect burst of the other node's 4,900 clients) lost every session at
  once, and 4,900 or 9,800 clients reconnected when none needed to (`stumpcast chaos`). Before
  that, with a 1 s check timeout and 2 falls, a busy node missed two checks, lost its
  sessions to the other node, which then missed its own: a cascade.
* ``monitor-uri /lb/healthz``: HAProxy's own health, answered without a backend.

Two HAProxy processes, ``lb`` and ``lb-2``, share the port: HAProxy binds with SO_REUSEPORT (its
default on Linux), so the kernel spreads new connections over both listeners, and when one
process dies the other takes every new connection on the same address. The load balancer is
then no single point of failure, and each process holds half the connections within its own
open-files limit (two descriptors per proxied connection: one process here tops out near
10,000 under a hard limit of 20,000). Each has its own admin socket; the launcher's probe asks
that socket (``show info``), since the shared port would answer for either process.
"""

from __future__ import annotations

import shutil

from schemas.settings import Settings
from stumpcast.stack.errors import ToolMissing
from stumpcast.stack.probes import http_ready
from stumpcast.stack.server import Port, Server, StartContext

HEALTH_URI = "/lb/healthz"


def gateways(settings: Settings) -> tuple[str, ...]:
    """The gateway nodes behind the load balancer (default: the one of the settings)."""
    if settings.stack_lb_gateways:
        return settings.stack_lb_gateways
    return (f"{settings.gateway_host}:{settings.gateway_port}",)


def haproxy_cfg(*, port: int, backends: tuple[str, ...], socket_path: str,
                maxconn: int = 20000) -> str:
    servers = "\n".join(f"    server gw{i} {hp} check" for i, hp in enumerate(backends, 1))
    return f"""\
global
    maxconn {maxconn}
    hard-stop-after 30s
    stats socket {socket_path} mode 600 level admin

defaults
    mode http
    timeout connect 3s
    timeout client  30s
    timeout server  30s
    timeout tunnel  1h
    timeout client-fin 10s
    timeout check   3s
    option redispatch
    retries 2

frontend ws_in
    bind 127.0.0.1:{port}
    maxconn {maxconn}
    monitor-uri {HEALTH_URI}
    default_backend gateways

backend gateways
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter 1s fall 3 rise 2
{servers}
"""


def max_connections(cap: int = 20000) -> int:
    """What the process's file limit allows: HAProxy needs two descriptors per proxied
    connection and refuses to start when it cannot raise its limit to that ("Cannot raise FD
    limit", seen with maxconn 20000 under a hard limit of 20000)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return cap
    return max(100, min(cap, (hard - 200) // 2))


class LoadBalancer(Server):
    name = "lb"
    stop_grace = 10.0

    def ports(self) -> list[Port]:
        return [Port(self.settings.stack_lb_port, "STUMPCAST_STACK_LB_PORT", "http",
                     shared=True)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.stack_lb_port}"

    @property
    def socket_path(self) -> str:
        return str(self.layout.conf(self.name) / "haproxy.sock")

    def probe(self, timeout: float = 5.0) -> bool:
        """This process answers on its admin socket and the shared port serves HAProxy's own
        health (from this process or its twin: the kernel picks)."""
        try:
            info = admin_command(self.socket_path, "show info", min(timeout, 2.0))
        except OSError:
            return False
        return "Name: HAProxy" in info and http_ready(self.url + HEALTH_URI, min(timeout, 2.0))

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = shutil.which("haproxy")
        if binary is None:
            raise ToolMissing("haproxy is not on PATH. Install it "
                              "(Debian/Ubuntu: apt-get install haproxy).")
        conf = self.layout.conf(self.name) / "haproxy.cfg"
        conf.write_text(haproxy_cfg(port=self.settings.stack_lb_port,
                                    backends=gateways(self.settings),
                                    socket_path=self.socket_path, maxconn=max_connections()))
        # -db: stay in the foreground (the launcher owns the process); nothing of the Debian
        # service is touched.
        return [binary, "-db", "-f", str(conf)]


class SecondLoadBalancer(LoadBalancer):
    """The twin on the same port (``stack up --only lb,lb-2``)."""

    name = "lb-2"


LB_TYPES: dict[str, type[LoadBalancer]] = {"lb": LoadBalancer, "lb-2": SecondLoadBalancer}


def admin_command(socket_path: str, command: str, timeout: float = 2.0) -> str:
    """One command on an HAProxy admin socket, its whole answer."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return raw.decode()


def backend_sessions(*socket_paths: str) -> dict[str, int]:
    """Current sessions per gateway node (``show stat`` on the admin sockets, summed over
    the load balancer processes named)."""
    out: dict[str, int] = {}
    for path in socket_paths:
        for name, n in _sessions(admin_command(path, "show stat")).items():
            out[name] = out.get(name, 0) + n
    return out


def _sessions(raw: str) -> dict[str, int]:
    lines = raw.splitlines()
    header = lines[0].lstrip("# ").split(",")
    out: dict[str, int] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "gateways" and row.get("svname", "").startswith("gw"):
            out[row["svname"]] = int(row.get("scur") or 0)
    return out
