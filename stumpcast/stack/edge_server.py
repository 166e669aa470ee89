"""The caching edges cdn-a and cdn-b: Debian's nginx, run as our own child process.

Both render the one template ``edge.nginx.conf`` (placeholders ``{{ name }}``; nginx itself uses
``$`` and braces, so neither ``str.format`` nor ``string.Template`` fits). Each edge fronts the
media origin (``/hls/``) and the gateway (the HTTP API, the page, ``/ws`` passed through) on the
ports the settings give them. A fault (a throttle or an error status on the HLS locations) is an
include file in the edge's config folder plus a reload: ``set_fault``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from stumpcast.stack.errors import StackError, ToolMissing
from stumpcast.stack.server import Port, Server, StartContext

TEMPLATE = "edge.nginx.conf"
_PLACEHOLDER = re.compile(r"\{\{ *([a-z_]+) *\}\}")
_RATE = re.compile(r"^[1-9][0-9]{0,8}[kKmM]?$")
FAULT_KINDS = ("throttle", "status")


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{{ name }}`` placeholders; a missing or unused value is an error (a typo)."""
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"edge template: no value for {{{{ {key} }}}}")
        used.add(key)
        return values[key]

    text = _PLACEHOLDER.sub(fill, template)
    unused = set(values) - used
    if unused:
        raise KeyError(f"edge template: values never used: {', '.join(sorted(unused))}")
    return text


def template_text() -> str:
    return resources.files("stumpcast.stack").joinpath(TEMPLATE).read_text()


@dataclass(frozen=True)
class EdgeConfig:
    """What differs between two edges."""

    name: str
    port: int
    origin: str     # host:port of the media origin
    gateway: str    # host:port of the gateway
    conf_dir: Path
    data_dir: Path
    log_dir: Path

    @property
    def fault_dir(self) -> Path:
        return self.conf_dir / "fault.d"

    def values(self) -> dict[str, str]:
        # Workers run as the user who runs the stack, so they can write the run folder (as root,
        # nginx would otherwise switch them to "nobody").
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        return {"name": self.name, "zone": self.name.replace("-", "_"),
                "listen": f"127.0.0.1:{self.port}", "origin": self.origin,
                "gateway": self.gateway, "conf_dir": str(self.conf_dir),
                "data_dir": str(self.data_dir), "fault_dir": str(self.fault_dir),
                "access_log": str(self.log_dir / f"{self.name}.access.log"),
                "error_log": str(self.log_dir / f"{self.name}.log"), "user_line": user}


def edge_conf(cfg: EdgeConfig, template: str | None = None) -> str:
    return render(template if template is not None else template_text(), cfg.values())


def fault_files(kind: str | None, value: str = "") -> dict[str, str]:
    """The include files of a fault: ``location.conf`` (in the HLS locations) and
    ``server.conf`` (names the fault for ``/edge/healthz``). ``None``: no fault, no files."""
    if kind is None:
        return {}
    if kind == "throttle":
        if not _RATE.match(value):
            raise ValueError(f"throttle {value!r}: a rate in bytes/s such as 100k or 2m")
        directive = f"limit_rate {value};"
    elif kind == "status":
        if not value.isdigit() or not 400 <= int(value) <= 599:
            raise ValueError(f"status {value!r}: an HTTP error status, 400-599")
        directive = f"return {value};"
    else:
        raise ValueError(f"fault {kind!r}: choose from {', '.join(FAULT_KINDS)}")
    return {"location.conf": directive + "\n",
            "server.conf": f'set $edge_fault "{kind} {value}";\n'}


class EdgeServer(Server):
    """One caching edge. Subclasses name it and say which setting holds its port."""

    port_setting = ""
    stop_grace = 10.0

    @property
    def port(self) -> int:
        raise NotImplementedError

    def ports(self) -> list[Port]:
        return [Port(self.port, self.port_setting, "http")]

    def config(self) -> EdgeConfig:
        s = self.settings
        return EdgeConfig(name=self.name, port=self.port,
                          origin=f"127.0.0.1:{s.media_http_port}",
                          gateway=f"{s.gateway_host}:{s.gateway_port}",
                          conf_dir=self.layout.conf(self.name),
                          data_dir=self.layout.data(self.name),
                          log_dir=self.layout.log(self.name).parent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self, timeout: float = 2.0) -> str | None:
        """The body of ``/edge/healthz`` ("cdn-a fault=none"), or None if it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/edge/healthz", timeout=timeout) as resp:
                return str(resp.read().decode().strip())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def probe(self, timeout: float = 5.0) -> bool:
        body = self.health(min(timeout, 2.0))
        return body is not None and body.startswith(f"{self.name} ")

    def prepare(self, ctx: StartContext) -> list[str]:
        binary = nginx_binary()
        cfg = self.config()
        for sub in ("hls", "api", "tmp"):
            (cfg.data_dir / sub).mkdir(parents=True, exist_ok=True)
        cfg.fault_dir.mkdir(parents=True, exist_ok=True)
        conf = cfg.conf_dir / "nginx.conf"
        conf.write_text(edge_conf(cfg))
        check_conf(binary, conf)
        # -e: nginx opens its compiled-in error log before it reads the config (1.19.5+).
        return [binary, "-e", str(cfg.log_dir / f"{self.name}.log"), "-c", str(conf)]

    def set_fault(self, pid: int, kind: str | None, value: str = "",
                  timeout: float = 10.0) -> str:
        """Write (or clear) the fault files, reload, and wait until the edge reports it."""
        cfg = self.config()
        files = fault_files(kind, value)
        cfg.fault_dir.mkdir(parents=True, exist_ok=True)
        for old in cfg.fault_dir.glob("*.conf"):
            old.unlink()
        for name, text in files.items():
            (cfg.fault_dir / name).write_text(text)
        check_conf(nginx_binary(), cfg.conf_dir / "nginx.conf")
        os.kill(pid, signal.SIGHUP)  # graceful reload: old workers finish what they serve
        want = f"{self.name} fault=" + (f"{kind} {value}" if kind else "none")
        workers = _worker_processes((cfg.conf_dir / "nginx.conf").read_text())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # One answer in the new state is not enough: until the master has told the old
            # workers to stop, they still accept connections and serve the old config.
            if self.health() == want and len(accepting_workers(pid)) <= workers:
                return want
            time.sleep(0.1)
        raise StackError(f"{self.name} did not report {want!r} {timeout:.0f} s after the "
                         f"reload; see {self.log_path}")


def _worker_processes(conf: str) -> int:
    m = re.search(r"^\s*worker_processes\s+(\d+)\s*;", conf, re.MULTILINE)
    return int(m[1]) if m else 1


def accepting_workers(master: int) -> list[int]:
    """The nginx worker processes of ``master`` that still accept connections: not those
    told to stop by a reload (their title then says "shutting down"; they have closed their
    listening sockets and only finish the requests they hold)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == master and "worker process" in title and "shutting down" not in title:
            found.append(int(entry.name))
    return found


class CdnA(EdgeServer):
    name = "cdn-a"
    port_setting = "STUMPCAST_STACK_CDN_A_PORT"

    @property
    def port(self) -> int:
        return int(self.settings.stack_cdn_a_port)


class CdnB(EdgeServer):
    name = "cdn-b"
    port_setting = "STUMPCAST_STACK_CDN_B_PORT"

    @property
    def port(self) -> int:
        return int(self.settings.stack_cdn_b_port)


def nginx_binary() -> str:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)
    if binary is None:
        raise ToolMissing("nginx is not installed. Install it (Debian/Ubuntu: apt-get "
                          "install nginx; `make setup` does).")
    return binary


def check_conf(binary: str, conf: Path) -> None:
    """``nginx -t``: a config nginx refuses is reported with nginx's own words, not started."""
    out = subprocess.run([binary, "-t", "-q", "-e", "stderr", "-c", str(conf)],
                         capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise StackError(f"nginx refuses {conf}:\n{(out.stderr or out.stdout).strip()}")
