"""Helpers of the browser tests: our own services on free ports, screenshots, the pure fold.

The stack (Kafka, Cassandra, Redis) is the one ``stumpcast stack up`` runs (root ``stack``
fixture: skip, or fail under CI=true). On top of it the fixtures (conftest.py) start, on free
ports and in their own process groups, a streams worker and a gateway (once per session,
lazily, after the stack check), a media worker per test that needs video (it follows one
match), and live replays (``stumpcast live-replay``: ball instants on the wall clock, so on the
video's PDT timeline).
Playwright drives ``/usr/bin/chromium`` through ``executable_path``; it never downloads a browser.
A missing Chromium skips, or fails under CI. Logs and screenshots go to ``test-artifacts/e2e``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
MATCH_FILE = Settings.from_env().cricsheet_dir / "1370353.json"  # 2023 IPL final
CHROMIUM = os.environ.get("STUMPCAST_TEST_CHROMIUM", "/usr/bin/chromium")
SEGMENT_S = 2


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true and {what}", pytrace=False)
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class Proc:
    """One ``python -m stumpcast ...`` child in its own process group, output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    ready_url: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def start(self, timeout: float = 90.0) -> Proc:
        ARTIFACTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
        self.log = ARTIFACTS / "logs" / f"{self.name}.log"
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "stumpcast", *self.args], cwd=ROOT,
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0)
        if self.ready_url:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        assert self.popen is not None and self.ready_url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}); see {self.log}")
            if http_ok(self.ready_url):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s; see {self.log}")

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.running():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)
            self.popen.wait(15)

    def stop(self, grace: float = 10.0) -> None:
        if not self.running():
            return
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()


class Services:
    """The session's streams worker and gateway, plus per-test media workers and replays."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        shutil.rmtree(ARTIFACTS / "logs", ignore_errors=True)  # this session's logs only
        self.gateway_port = free_port()
        self.media_port = free_port()
        self.env = {
            "STUMPCAST_LOG_FORMAT": "text",
            "STUMPCAST_STREAMS_METRICS_PORT": str(free_port()),
            "STUMPCAST_GATEWAY_PORT": str(self.gateway_port),
            "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()),
            "STUMPCAST_GATEWAY_PANIC_DIR": str(workdir / "panic"),
            "STUMPCAST_GATEWAY_PANIC_FLAG": str(workdir / "PANIC"),
            "STUMPCAST_MEDIA_HTTP_PORT": str(self.media_port),
            "STUMPCAST_MEDIA_LADDER": "360p",       # one small rung: the browser needs CPU too
            "STUMPCAST_MEDIA_PRESET": "ultrafast",
        }
        self.procs: list[Proc] = []
        self.gateway: Proc | None = None
        self.started = False

    def ensure(self) -> Services:
        if not self.started:
            self.started = True
            port = self.env["STUMPCAST_STREAMS_METRICS_PORT"]
            self.spawn("streams", ["streams", "worker"], f"http://127.0.0.1:{port}/readyz")
            self.gateway = self.start_gateway()
        return self

    def spawn(self, name: str, args: list[str], ready_url: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 90.0) -> Proc:
        proc = Proc(name, args, {**self.env, **(env or {})}, ready_url)
        self.procs.append(proc)
        return proc.start(timeout)

    def start_gateway(self) -> Proc:
        return self.spawn("gateway", ["gateway", "serve"],
                          f"http://127.0.0.1:{self.gateway_port}/readyz")

    def media(self, match_id: str) -> Proc:
        """A media worker following ``match_id`` (markers, score bug), with its own folder."""
        folder = self.workdir / f"media-{match_id}"
        shutil.rmtree(folder, ignore_errors=True)
        return self.spawn(f"media-{match_id}", ["media", "worker", "--match-id", match_id],
                          f"http://127.0.0.1:{self.media_port}/readyz",
                          {"STUMPCAST_MEDIA_DIR": str(folder)})

    def replay(self, match_id: str, speed: float, live: bool = True) -> Proc:
        if live:
            args = ["live-replay", str(MATCH_FILE), "--match-id", match_id,
                    "--speed", str(speed), "--quiet"]
        else:
            args = ["replay", str(MATCH_FILE), "--match-id", match_id, "--speed", str(speed),
                    "--quiet"]
        return self.spawn(f"replay-{match_id}", args)

    def page_url(self, match_id: str, sync: bool = False) -> str:
        query = f"?media=http://127.0.0.1:{self.media_port}" + ("&sync=1" if sync else "")
        return f"http://127.0.0.1:{self.gateway_port}/{query}#/match/{match_id}"

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def fold_card(match_id: str) -> dict[str, Any]:
    """The scorecard document of the whole match by the pure fold (what the page must show)."""
    from streams import cricsheet
    from streams.fold import replay as fold_replay

    events = cricsheet.import_match(cricsheet.load(MATCH_FILE), match_id)
    return dict(fold_replay(events).scorecard().to_json())


def wait_for(page: Any, js: str, timeout: float, arg: Any = None) -> Any:
    """Poll a JS expression until truthy; return its value."""
    handle = page.wait_for_function(js, arg=arg, timeout=timeout * 1000, polling=200)
    return handle.json_value()


@contextlib.contextmanager
def desktop_page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (desktop size) in the module's Chromium, its errors collected on
    ``page.errors``; a screenshot is kept if the test fails."""
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (make setup installs Debian's chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed (make setup)")
    browser = request.getfixturevalue("browser")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                shot(page, f"FAILED-{request.node.name}")
        context.close()
