"""Fixtures for the browser tests (helpers and the full story in ``e2e_helpers``).

``e2e``: the session's streams worker and gateway on free ports, started lazily after the root
``stack`` check; ``media_worker`` and ``replay``: per-test children, stopped at the end;
``page``: a fresh Chromium page (Debian's ``/usr/bin/chromium`` through Playwright's
``executable_path``; a missing browser skips, or fails under CI=true).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_helpers import CHROMIUM, Proc, Services, desktop_page, missing


@pytest.fixture(scope="session")
def _services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    services = Services(tmp_path_factory.mktemp("e2e"))
    yield services  # nothing runs until a test has passed the stack check (``e2e``)
    services.stop_all()


@pytest.fixture
def e2e(stack: Any, _services: Services) -> Services:
    """The streams worker and gateway of this session, started on first use."""
    return _services.ensure()


@pytest.fixture
def media_worker(e2e: Services) -> Iterator[Callable[[str], Proc]]:
    """Start a media worker for a match; stopped when the test ends."""
    if not shutil.which("ffmpeg"):
        missing("ffmpeg is not installed (make setup)")
    started: list[Proc] = []

    def start(match_id: str) -> Proc:
        proc = e2e.media(match_id)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def replay(e2e: Services) -> Iterator[Callable[..., Proc]]:
    """Start a replay of the 2023 final under a match id; stopped when the test ends."""
    started: list[Proc] = []

    def start(match_id: str, speed: float, live: bool = True) -> Proc:
        proc = e2e.replay(match_id, speed, live)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# Module scope, not session: while sync Playwright runs, the main thread counts as running an
# event loop, and every later asyncio test (pytest-asyncio's Runner) would refuse to start.
@pytest.fixture(scope="module")
def _chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture
def browser(_chromium: Any) -> Any:
    return _chromium


@pytest.fixture
def page(request: pytest.FixtureRequest, e2e: Services) -> Iterator[Any]:
    """A fresh browser page (desktop size); a screenshot is kept if the test fails."""
    with desktop_page(request) as pg:
        yield pg


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
