"""The Centrifugo peer of the gateway bench: its config, its Go build, its publish requests.

Building the real Centrifugo takes minutes, so it is not part of `make test`; here the go
command is a small script that records what it was given, and the server a small script that
answers /health and the publish API, which is enough to check what this side sends and does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.gateway import gotool, peer
from bench.gateway.peer import Centrifugo, PeerError

UPDATE = b'{"type":"update","v":1,  "seq":7,"name":"caf\\u00e9","z":1.50,"a":[ ]}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- config ----------------------------------------------------------------------------------

def test_config_is_no_auth_no_history_own_port_quiet():
    doc = peer.config_document(24555, "k3y")
    assert doc["http_server"] == {"address": "127.0.0.1", "port": 24555}
    assert doc["client"] == {"insecure": True}
    assert doc["http_api"] == {"key": "k3y"}
    opts = doc["channel"]["without_namespace"]
    assert opts["history_size"] == 0 and not opts["force_recovery"] and not opts["presence"]
    assert doc["admin"] == {"enabled": False}
    assert doc["health"] == {"enabled": True}
    assert doc["log"] == {"level": "warn"}


# -- the go command: its line, its environment, its toolchain -------------------------------

def test_install_command_builds_the_release_version_from_the_proxy():
    cmd = gotool.install_command("/x/go", peer.MODULE, peer.VERSION, peer.LDFLAGS)
    assert cmd[:2] == ["/x/go", "install"]
    assert cmd[-1] == "github.com/centrifugal/centrifugo/v6@v6.9.1"
    assert "-ldflags=-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=6.9.1" \
        in cmd


def test_go_environment_keeps_everything_under_the_work_dir(tmp_path: Path):
    base = {"PATH": "/usr/bin", "HOME": "/root", "GOPATH": "/root/go", "GOFLAGS": "-x",
            "GOPROXY": "off", "GOROOT": "/elsewhere", "CGO_ENABLED": "1"}
    env = gotool.go_env(tmp_path, base)
    for key in ("GOPATH", "GOMODCACHE", "GOCACHE", "GOBIN", "GOENV"):
        assert Path(env[key]).is_relative_to(tmp_path), key
    assert env["GOBIN"] == str(tmp_path / "bin")
    assert env["GOFLAGS"] == "-mod=mod"
    assert env["GOPROXY"].split(",")[0] == "https://proxy.golang.org"
    assert env["GOTOOLCHAIN"] == "local" and env["GOWORK"] == "off"
    assert "GOROOT" not in env and env["CGO_ENABLED"] == "0" and env["PATH"] == "/usr/bin"


def test_go_version_output_is_parsed():
    assert gotool.parse_go_version("go version go1.26.8 linux/amd64\n") == (1, 26, 8)
    assert gotool.parse_go_version("go version go1.26 linux/amd64") == (1, 26, 0)
    assert gotool.parse_go_version("go version go1.27rc1 linux/amd64") == (1, 27, 0)
    assert gotool.parse_go_version("bash: go: command not found") is None
    assert gotool.required_go("module m\n\ngo 1.26\n\nrequire (\n)\n") == (1, 26, 0)
    assert gotool.required_go("module m\ngo 1.25.3\ntoolchain go1.25.5\n") == (1, 25, 3)
    with pytest.raises(gotool.GoToolError):
        gotool.required_go("module m\n")


def test_the_first_go_new_enough_is_chosen():
    old = ("/usr/bin/go", "go version go1.22.2 linux/amd64")
    new = ("/usr/local/go/bin/go", "go version go1.26.8 linux/amd64")
    assert gotool.choose_go((1, 26, 0), [old, new]) == "/usr/local/go/bin/go"
    assert gotool.choose_go((1, 22, 0), [old, new]) == "/usr/bin/go"
    assert gotool.choose_go((1, 27, 0), [old, new]) is None
    assert gotool.choose_go((1, 26, 0), [("/broken/go", "")]) is None


def test_without_a_go_new_enough_the_toolchain_is_fetched(tmp_path: Path, monkeypatch: Any):
    old_go = script(tmp_path / "go", "#!/bin/sh\n")
    monkeypatch.setattr(gotool.shutil, "which", lambda name: str(old_go))
    monkeypatch.setattr(gotool, "SYSTEM_GO", tmp_path / "absent" / "go")
    monkeypatch.setattr(gotool, "version_output", lambda go: "go version go1.22.2 linux/amd64")
    fetched: list[Any] = []
    monkeypatch.setattr(gotool, "fetch_toolchain",
                        lambda work, req, say: fetched.append(req) or Path("/w/go"))
    said: list[str] = []
    assert gotool.find_go(tmp_path, (1, 26, 0), said.append) == "/w/go"
    assert fetched == [(1, 26, 0)] and "fetching" in said[0]


def test_toolchain_version_is_the_newest_patch_of_the_minor():
    listed = ["v0.0.1-go1.26.0.linux-amd64", "v0.0.1-go1.26.10.linux-amd64",
              "v0.0.1-go1.26.9.linux-amd64", "v0.0.1-go1.27.1.linux-amd64",
              "v0.0.1-go1.26.11.linux-arm64", "v0.0.1-go1.26rc2.linux-amd64"]
    assert gotool.toolchain_version(listed, (1, 26, 0), "linux", "amd64") \
        == "v0.0.1-go1.26.10.linux-amd64"
    with pytest.raises(gotool.GoToolError):
        gotool.toolchain_version(listed, (1, 28, 0), "linux", "amd64")


def zip_of(files: list[tuple[str, bytes]], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files:
            z.writestr(name, data)
    return path


def test_zip_hash_follows_dirhash_h1(tmp_path: Path):
    import base64
    import hashlib
    files = [("m@v1/go.mod", b"module m\n"), ("m@v1/a.go", b"package m\n")]
    one = gotool.zip_h1(zip_of(files, tmp_path / "1.zip"))
    # the order inside the zip does not matter, the content does
    assert gotool.zip_h1(zip_of(files[::-1], tmp_path / "2.zip")) == one
    assert gotool.zip_h1(zip_of([files[0], ("m@v1/a.go", b"package n\n")],
                                tmp_path / "3.zip")) != one
    lines = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files))
    assert one == "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def test_the_sum_database_answer_is_read():
    answer = ("41952037\ngolang.org/toolchain v0.0.1-go1.26.8.linux-amd64 h1:AAA=\n"
              "golang.org/toolchain v0.0.1-go1.26.8.linux-amd64/go.mod h1:BBB=\n\n"
              "go.sum database tree\n")
    assert gotool.sum_line_hash(answer, "golang.org/toolchain",
                                "v0.0.1-go1.26.8.linux-amd64") == "h1:AAA="
    with pytest.raises(gotool.GoToolError):
        gotool.sum_line_hash(answer, "golang.org/toolchain", "v0.0.1-go1.26.9.linux-amd64")


# -- the build, with a go that records what it got ------------------------------------------

FAKE_GO = """#!/bin/sh
if [ "$1" = version ]; then echo "go version go1.26.8 linux/amd64"; exit 0; fi
echo "$@" >> "{calls}"
env >> "{calls}.env"
echo "go: downloading github.com/centrifugal/centrifuge v0.38.0"
echo "github.com/centrifugal/centrifugo/v6"
{action}
"""


def fake_build(tmp_path: Path, monkeypatch: Any, action: str) -> tuple[Centrifugo, Path]:
    calls = tmp_path / "calls"
    go = script(tmp_path / "go", FAKE_GO.format(calls=calls, action=action))
    monkeypatch.setattr(gotool, "module_gomod", lambda work, module, version: "go 1.26\n")
    monkeypatch.setattr(gotool, "find_go", lambda work, required, say: str(go))
    return Centrifugo(tmp_path / "work", free_port(), say=lambda s: None), calls


def test_a_build_runs_go_install_once_and_is_reused(tmp_path: Path, monkeypatch: Any):
    action = 'mkdir -p "$GOBIN" && printf x > "$GOBIN/centrifugo"'
    peer_, calls = fake_build(tmp_path, monkeypatch, action)
    assert peer_.build() == tmp_path / "work" / "bin" / "centrifugo"
    assert peer_.build() == peer_.binary  # the second build is the cached binary
    assert calls.read_text().splitlines() == [
        f"install -v -trimpath -ldflags={peer.LDFLAGS} {peer.MODULE}@{peer.VERSION}"]
    env = dict(line.split("=", 1) for line in (tmp_path / "calls.env").read_text().splitlines()
               if "=" in line)
    assert env["GOMODCACHE"].startswith(str(tmp_path / "work"))
    assert env["GOFLAGS"] == "-mod=mod"


def test_a_failed_build_says_what_failed_and_where_the_log_is(tmp_path: Path, monkeypatch: Any):
    peer_, _ = fake_build(tmp_path, monkeypatch, 'echo "compile: out of memory" >&2; exit 3')
    with pytest.raises(PeerError) as failed:
        peer_.build()
    message = str(failed.value)
    assert "exited with 3" in message and "compile: out of memory" in message
    assert str(tmp_path / "work" / "build.log") in message
    assert not (tmp_path / "work" / "bin" / "centrifugo.built").exists()


# -- publish requests -------------------------------------------------------------------------

def test_publish_body_embeds_the_update_bytes_unchanged():
    body = peer.publish_body("bench0", UPDATE)
    assert body == b'{"channel":"bench0","data":' + UPDATE + b"}"
    assert orjson.loads(body)["data"]["name"] == "café"


@pytest.mark.parametrize("channel", ["", "match:bench0", "$private", "x" * 256])
def test_channels_centrifugo_would_refuse_are_refused_here(channel: str):
    with pytest.raises(ValueError, match="channel"):
        peer.publish_body(channel, UPDATE)


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match="empty"):
        peer.publish_body("bench0", b"  ")


def test_replies_are_checked():
    peer.check_reply("c", 200, b'{"result":{}}')
    for status, payload in ((200, b'{"error":{"code":102,"message":"unknown channel"}}'),
                            (401, b""), (200, b"<html>")):
        with pytest.raises(PeerError, match="publish to c"):
            peer.check_reply("c", status, payload)


def read(raw: bytes) -> tuple[int, bytes, bool]:
    async def go() -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await peer.read_response(reader)
    return asyncio.run(go())


def test_http_responses_are_read():
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"result\":{}}") \
        == (200, b'{"result":{}}', True)
    assert read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"5\r\n{\"res\r\n8\r\nult\":{}}\r\n0\r\n\r\n") == (200, b'{"result":{}}', False)


# -- start, publish, stop, with a server that answers like Centrifugo's API -----------------

FAKE_SERVER = """#!{python}
import json, sys, http.server
cfg = json.load(open(sys.argv[2]))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.reply(b"{{}}")
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = self.headers["X-API-Key"] == cfg["http_api"]["key"]
        open("published", "ab").write(body + b"\\n")
        self.reply(b'{{"result":{{}}}}' if ok else b'{{"error":{{"code":401}}}}')
    def log_message(self, *a):
        pass
# threads, as Centrifugo serves connections concurrently: publish() keeps its connection alive
http.server.ThreadingHTTPServer(("127.0.0.1", cfg["http_server"]["port"]), H).serve_forever()
"""


def started(tmp_path: Path) -> Centrifugo:
    work = tmp_path / "work"
    (work / "bin").mkdir(parents=True)
    srv = Centrifugo(work, free_port(), say=lambda s: None)
    script(srv.binary, FAKE_SERVER.format(python=sys.executable))
    srv.binary.with_name("centrifugo.built").write_text(srv.stamp)
    srv.start(timeout=20)
    return srv


def test_start_publish_stop(tmp_path: Path):
    srv = started(tmp_path)
    try:
        pid = srv.pid
        assert os.getpgid(pid) == pid  # its own process group, which stop() signals
        srv.publish("bench0", UPDATE)
        srv.publish("bench0", UPDATE)  # the same kept-alive connection

        async def many() -> None:
            await asyncio.gather(*(srv.apublish(f"bench{i}", UPDATE) for i in range(3)))
            await srv.apublish("bench9", UPDATE)
        asyncio.run(many())
        asyncio.run(srv.apublish("bench10", UPDATE))  # another loop: new connections
    finally:
        srv.stop()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    published = (tmp_path / "work" / "published").read_bytes().splitlines()
    assert len(published) == 7
    assert published[0] == b'{"channel":"bench0","data":' + UPDATE + b"}"
    with pytest.raises(PeerError, match="not running"):
        _ = srv.pid
    srv.stop()  # twice is harmless


def test_a_refused_publish_raises(tmp_path: Path):
    srv = started(tmp_path)
    try:
        srv.api_key = "wrong"
        with pytest.raises(PeerError, match="publish to bench0"):
            srv.publish("bench0", UPDATE)
    finally:
        srv.stop()


def test_a_taken_port_or_a_server_that_dies_is_an_error(tmp_path: Path):
    work = tmp_path / "work"
    (work / "bin").mkdir(parents=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        srv = Centrifugo(work, taken.getsockname()[1], say=lambda s: None)
        script(srv.binary, "#!/bin/sh\necho 'config error' >&2\nexit 2\n")
        srv.binary.with_name("centrifugo.built").write_text(srv.stamp)
        with pytest.raises(PeerError, match="is taken"):
            srv.start(timeout=5)
    srv.port = free_port()
    with pytest.raises(PeerError, match="exited with 2 at start: config error"):
        srv.start(timeout=5)


def test_progress_counts_downloads_and_packages(tmp_path: Path):
    log = tmp_path / "build.log"
    log.write_text("go: downloading a v1\ngo: downloading b v2\nruntime\nsync\nfmt\n")
    assert peer._progress(log) == "2 modules downloaded, 3 packages compiled"
