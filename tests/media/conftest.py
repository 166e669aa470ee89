"""Helpers for the live media tests: real ffmpeg, a worker subprocess, the stack check.

In CI (``CI=true``) a missing ffmpeg or Kafka fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def missing(what: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None or shutil.which("ffprobe") is None:
        missing("ffmpeg/ffprobe")
    return str(path)


@pytest.fixture
def media_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def kafka(media_settings: Settings) -> dict[str, Any]:
    """The admin principal's client settings, once Kafka answers with them."""
    from confluent_kafka.admin import AdminClient

    from tests.kafka_access import admin_config

    try:
        config = admin_config(media_settings)
        AdminClient(config).list_topics(timeout=5)
    except Exception:
        missing(f"Kafka at {media_settings.kafka_bootstrap_str}")
    return config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProc:
    """``stumpcast media worker`` as a subprocess, with its own folder and ports."""

    def __init__(self, work: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.work, self.args = work, args
        self.port = free_port()
        self.env = {**os.environ, "STUMPCAST_MEDIA_DIR": str(work),
                    "STUMPCAST_MEDIA_HTTP_PORT": str(self.port),
                    "STUMPCAST_LOG_FORMAT": "text", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.work / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stumpcast", "media", "worker", *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def status(self) -> dict:
        import json

        return json.loads(self.get("/healthz")[2])

    def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("worker not ready: " + self.log_tail())

    def log_tail(self) -> str:
        path = self.work / "worker.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PublishedWatch:
    """Lints every playlist the origin folder holds, every 100 ms, while a test runs.

    Playlists are replaced atomically, so each read is a whole published file; any problem
    seen here is a corrupt playlist that a player could have fetched.
    """

    def __init__(self, origin: Path) -> None:
        import threading

        self.origin = origin
        self.problems: list[str] = []
        self.checked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from media.lint import lint_master, lint_media

        while not self._stop.wait(0.1):
            for path in sorted(self.origin.glob("**/*.m3u8")):
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    continue
                lint = lint_master if path.name == "master.m3u8" else lint_media
                self.problems += [f"{path.name}: {p.rule} {p.message}" for p in lint(text)]
                self.checked += 1

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return self.problems


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[list[WorkerProc]]:
    made: list[WorkerProc] = []
    yield made
    for w in made:
        w.stop()
