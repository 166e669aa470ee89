"""Centrifugo as the peer of ``stumpcast bench gateway --peer centrifugo``.

Issue #21 measures the gateway side by side with Centrifugo v6.9.1, built from the Go module
proxy and run with "default settings apart from no auth and no history", on the same machine
and in the same run. This module builds it (once, cached under the bench's work folder), starts
it as a child process, publishes to it through its server HTTP API and stops it. The load
client speaks Centrifugo's client protocol on ``ws_path``; the bench reads the server's CPU and
RSS from ``/proc/<pid>``.

Sources for the Centrifugo specifics, all at tag v6.9.1 of github.com/centrifugal/centrifugo:
config keys in internal/configtypes/types.go and namespace.go; the release build flags in
.goreleaser.yml; the API key check in internal/middleware/auth.go; /health in internal/app/mux.go.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.gateway import gotool

MODULE = "github.com/centrifugal/centrifugo/v6"
VERSION = "v6.9.1"
# As the release build (.goreleaser.yml): stripped, and the version stamped so that
# `centrifugo version` says 6.9.1 rather than 0.0.0 (internal/build/build.go).
LDFLAGS = f"-s -w -X {MODULE}/internal/build.Version={VERSION.removeprefix('v')}"
WS_PATH = "/connection/websocket"  # WebSocket.HandlerPrefix default (types.go)
API_PATH = "/api/publish"  # HttpAPI.HandlerPrefix "/api" + the publish route
BUILD_LIMIT = 45 * 60  # seconds; a cold build is minutes on 2 cores
STOP_GRACE = 10.0
REPLY_TIMEOUT = 10.0  # seconds for a publish answer, as the blocking publish()


class PeerError(RuntimeError):
    """The peer server failed to build, start, answer or accept a publication."""


def config_document(port: int, api_key: str) -> dict[str, Any]:
    """Centrifugo's config: its defaults apart from no auth, no history, quiet logs, own port."""
    return {
        # http_server.address/port (HTTPServer): loopback only, the port the bench gave us
        "http_server": {"address": "127.0.0.1", "port": port},
        # log.level (Log): warn, so a 20,000-connection run does not log a line per connect
        "log": {"level": "warn"},
        # client.insecure (Client.Insecure): anonymous connections, no token, may subscribe to
        # any channel (internal/client/handler.go: the subscribe check ends in cfg.Client.Insecure)
        "client": {"insecure": True},
        # http_api.key (HttpAPI.Key): the API stays authenticated, by an X-API-Key header
        "http_api": {"key": api_key},
        # channel.without_namespace (Channel.WithoutNamespace, ChannelOptions in namespace.go):
        # the defaults already mean no history (history_size 0), no recovery, no positioning,
        # no presence, no join/leave; written out so the document says what "no history" is
        "channel": {"without_namespace": {
            "history_size": 0, "force_recovery": False, "allow_recovery": False,
            "force_positioning": False, "presence": False, "join_leave": False}},
        # admin.enabled (Admin.Enabled): off, its default
        "admin": {"enabled": False},
        # health.enabled (Health.Enabled): /health, which start() waits for
        "health": {"enabled": True},
        # usage_stats.disabled (UsageStats.Disabled): a benchmark sends nothing to the internet
        "usage_stats": {"disabled": True},
    }


def check_channel(channel: str) -> None:
    """Channel names that reach Centrifugo's options for channels without a namespace."""
    # ':' is channel.namespace_boundary and '$' channel.private_prefix (types.go defaults): a
    # "match:x" would look for a namespace "match" and be refused as an unknown channel.
    if not channel or ":" in channel or channel.startswith("$") or len(channel) > 255:
        raise ValueError(f"channel {channel!r}: Centrifugo's peer needs a name of 1-255 "
                         "characters without ':' and not starting with '$'")


def publish_body(channel: str, data: bytes) -> bytes:
    """The publish request; ``data`` (a JSON document) is embedded byte for byte."""
    check_channel(channel)
    if not data.strip():
        raise ValueError(f"publish to {channel}: empty data")
    return orjson.dumps({"channel": channel, "data": orjson.Fragment(data)})


def check_reply(channel: str, status: int, payload: bytes) -> None:
    """The API answers 200 with {"result": {}} or, in its default error mode, {"error": ...}."""
    if status != 200:
        raise PeerError(f"publish to {channel}: HTTP {status} {payload[:200]!r}")
    try:
        reply = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PeerError(f"publish to {channel}: not JSON: {payload[:200]!r}") from exc
    if not isinstance(reply, dict) or "error" in reply:
        raise PeerError(f"publish to {channel}: Centrifugo answered {payload[:200]!r}")


def request_head(port: int, api_key: str, length: int) -> bytes:
    return (f"POST {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, whether the connection may be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip().lower()
               for k, v in (line.split(b":", 1) for line in lines[1:] if b":" in line)}
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        body = bytearray()
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # the empty trailer
        payload = bytes(body)
    else:
        payload = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, payload, headers.get(b"connection") != b"close"


class Centrifugo:
    """Centrifugo v6.9.1 built from the Go module proxy, run by the bench, stopped by it."""

    def __init__(self, work_dir: Path, port: int, say: Callable[[str], None] = print) -> None:
        self.work_dir, self.port, self.say = Path(work_dir), port, say
        self.binary = self.work_dir / "bin" / "centrifugo"
        self.api_key = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: http.client.HTTPConnection | None = None
        # idle keep-alive connections of apublish, on the loop that opened them
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._aloop: asyncio.AbstractEventLoop | None = None

    # -- build ---------------------------------------------------------------------------------

    @property
    def stamp(self) -> str:
        return f"{MODULE}@{VERSION} {LDFLAGS}"

    def build(self) -> Path:
        """``go install`` once; a later call (another start, another run) reuses the binary."""
        stamp = self.binary.with_name("centrifugo.built")
        if self.binary.exists() and stamp.exists() and stamp.read_text() == self.stamp:
            return self.binary
        self.work_dir.mkdir(parents=True, exist_ok=True)
        required = gotool.required_go(gotool.module_gomod(self.work_dir, MODULE, VERSION))
        go = gotool.find_go(self.work_dir, required, self.say)
        cmd = gotool.install_command(go, MODULE, VERSION, LDFLAGS)
        log = self.work_dir / "build.log"
        self.say(f"building Centrifugo {VERSION} with {gotool.version_output(go).strip()} "
                 f"(minutes on 2 cores; log {log})")
        started = time.monotonic()
        code = self._run_build(cmd, gotool.go_env(self.work_dir, os.environ), log)
        took = time.monotonic() - started
        if code != 0 or not self.binary.exists():
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
            raise PeerError(f"building Centrifugo failed: `{' '.join(cmd)}` exited with {code} "
                            f"after {took:.0f} s; last lines: {tail}; full log: {log}")
        stamp.write_text(self.stamp)
        self.say(f"built {self.binary} in {took:.0f} s "
                 f"({self.binary.stat().st_size / 2**20:.1f} MiB)")
        return self.binary

    def _run_build(self, cmd: list[str], env: dict[str, str], log: Path) -> int:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.work_dir,
                                    start_new_session=True)
            started = last = time.monotonic()
            try:
                while (code := proc.poll()) is None:
                    time.sleep(1)
                    now = time.monotonic()
                    if now - started > BUILD_LIMIT:
                        raise PeerError(f"building Centrifugo took over {BUILD_LIMIT} s; log {log}")
                    if now - last >= 30:
                        last = now
                        self.say(f"  building: {now - started:.0f} s, {_progress(log)}")
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return code

    # -- run -----------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Build if needed, start, and wait until /health answers."""
        if self._proc is not None and self._proc.poll() is None:
            raise PeerError(f"Centrifugo already runs (pid {self._proc.pid})")
        binary = self.build()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise PeerError(f"port {self.port} is taken: Centrifugo cannot listen "
                                "there") from exc
        config = self.work_dir / "centrifugo.json"
        config.write_bytes(orjson.dumps(config_document(self.port, self.api_key),
                                        option=orjson.OPT_INDENT_2))
        log = self.work_dir / "centrifugo.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen([str(binary), "--config", str(config)],
                                          stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.work_dir,
                                          start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_healthy(timeout, log)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float, log: Path) -> None:
        assert self._proc is not None
        url = f"http://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (code := self._proc.poll()) is not None:
                tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
                raise PeerError(f"Centrifugo exited with {code} at start: {tail} (log {log})")
            with (contextlib.suppress(OSError, urllib.error.URLError),
                  urllib.request.urlopen(url, timeout=1) as r):  # noqa: S310 (loopback)
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise PeerError(f"Centrifugo did not answer {url} within {timeout} s (log {log})")

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise PeerError("Centrifugo is not running")
        return self._proc.pid

    @property
    def ws_path(self) -> str:
        return WS_PATH

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after a grace; safe to call twice."""
        atexit.unregister(self.stop)
        if self._http is not None:
            self._http.close()
            self._http = None
        self._drop_idle()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.say(f"Centrifugo did not stop within {STOP_GRACE} s of SIGTERM: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # -- publish -------------------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        """Server API publish over one keep-alive connection."""
        body = publish_body(channel, data)
        headers = {"X-API-Key": self.api_key, "Content-Type": "application/json"}
        for attempt in (0, 1):
            reused = self._http is not None
            if self._http is None:
                self._http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._http.request("POST", API_PATH, body, headers)
                resp = self._http.getresponse()
                status, payload = resp.status, resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._http.close()
                self._http = None
                # a kept-alive connection the server closed while idle: once more, on a new one
                if not reused or attempt:
                    raise PeerError(f"publish to {channel}: {exc!r}") from exc
        check_reply(channel, status, payload)

    async def apublish(self, channel: str, data: bytes) -> None:
        """The same from asyncio; concurrent calls each get a connection, kept alive after."""
        body = publish_body(channel, data)
        request = request_head(self.port, self.api_key, len(body)) + body
        if self._aloop is not asyncio.get_running_loop():
            self._drop_idle()
            self._aloop = asyncio.get_running_loop()
        for attempt in (0, 1):
            reused = bool(self._idle)
            try:
                status, payload = await self._exchange(request)
                break
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                if not reused or attempt:
                    raise PeerError(f"publish to {channel}: {exc!r}") from exc
        check_reply(channel, status, payload)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        keep = False
        try:
            writer.write(request)
            async with asyncio.timeout(REPLY_TIMEOUT):  # a stuck server fails the run, not hangs it
                status, payload, keep = await read_response(reader)
        finally:
            if keep:
                self._idle.append((reader, writer))
            else:  # failed, cancelled mid-request or closed by the server: never reused
                writer.close()
        return status, payload

    def _drop_idle(self) -> None:
        for _, writer in self._idle:
            with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                writer.close()
        self._idle = []


def _progress(log: Path) -> str:
    """What ``go install -v`` has done so far: modules fetched, packages compiled."""
    lines = log.read_text(errors="replace").splitlines()
    fetched = sum(1 for line in lines if line.startswith("go: downloading"))
    return f"{fetched} modules downloaded, {len(lines) - fetched} packages compiled"
