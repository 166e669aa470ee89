"""Feature flags on the live page in a real browser (Debian's Chromium, headless).

Two pages of the same match in two regions, against a real gateway, Kafka and Redis: a flag
turned off for one region (Kafka first, then Redis, then the gateway's flags channel) hides the
feature on that region's page within 1 s, and not on the other region's page. Regions are
unique to the run, and the test puts the flag back as it found it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ARTIFACTS, CHROMIUM, Proc, free_port, missing, shot

pytestmark = [pytest.mark.stack]

FLAG = "sync_video"  # the "sync with video" switch (#sync-switch), P2
HIDDEN = """() => getComputedStyle(document.querySelector('#sync-switch')).display === 'none'"""
HEARD = "(v) => window.stumpcast && window.stumpcast.flags.version !== null && " \
        "window.stumpcast.flags.version >= v"


@pytest.fixture(scope="module")
def flag_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from schemas.settings import Settings
    from tests.conftest import require

    require(Settings.from_env(), "kafka", "redis")
    port, work = free_port(), tmp_path_factory.mktemp("flags-e2e")
    proc = Proc("gateway-flags", ["gateway", "serve"], {
        "STUMPCAST_LOG_FORMAT": "text", "STUMPCAST_GATEWAY_PORT": str(port),
        "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()),
        "STUMPCAST_GATEWAY_PANIC_DIR": str(work / "panic"),
        "STUMPCAST_GATEWAY_PANIC_FLAG": str(work / "PANIC")},
        f"http://127.0.0.1:{port}/readyz")
    proc.start(60)
    yield port
    proc.stop()


@pytest.fixture
def store(settings: Any) -> Iterator[Any]:
    from runtime.flags import FlagStore

    s = FlagStore(settings)
    s.connect()  # the operator's tool is connected: the test times the change, not a connect
    yield s
    s.close()


def _page(browser: Any, port: int, region: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"http://127.0.0.1:{port}/?region={region}&media=http://127.0.0.1:9"
              f"#/match/e2e-flags-{uuid.uuid4().hex[:6]}")
    return page


def test_a_flag_off_in_one_region_hides_the_feature_there_only(
        browser: Any, flag_gateway: int, store: Any) -> None:
    from schemas.flags import FlagChange, FlagState

    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (make setup installs Debian's chromium)")
    run = uuid.uuid4().hex[:6]
    north, south = f"north-{run}", f"south-{run}"
    before = store.current().get(FLAG)
    old = before[1] if before else FlagState()
    pages = [_page(browser, flag_gateway, r) for r in (north, south)]
    try:
        for page in pages:  # the flags channel answered: the switch is shown in both
            page.wait_for_function(HEARD, arg=-1, timeout=15_000)
            assert not page.evaluate(HIDDEN)
        start = time.time()
        written = store.write(FlagChange(FLAG, FlagState(
            old.enabled, {**old.regions, north: False}, old.platforms, old.rollout, old.value),
            "e2e-test", int(start * 1000), "browser test: off in one region"))
        pages[0].wait_for_function(HIDDEN, timeout=max(1, 1000 - (time.time() - start) * 1000),
                                   polling="raf")
        hidden_ms = (time.time() - start) * 1000
        got = pages[0].evaluate("() => window.stumpcast.flags.log.at(-1)")
        pages[1].wait_for_function(HEARD, arg=written.version, timeout=5_000)
        shot(pages[0], "flags-north-hidden")
        shot(pages[1], "flags-south-shown")
        assert not pages[1].evaluate(HIDDEN), "the other region's page hid the feature too"
        assert [p.errors for p in pages] == [[], []], "script errors on the page"
        assert got["version"] == written.version
        assert hidden_ms <= 1000, f"hidden after {hidden_ms:.0f} ms"
        (ARTIFACTS / "flags-latency.txt").write_text(
            f"flag change to hidden in the browser: {hidden_ms:.0f} ms "
            f"(message received {got['at'] - start * 1000:.0f} ms after the write began)\n")
    finally:
        for page in pages:
            page.context.close()
        now = store.current().get(FLAG)
        if now is not None:  # put the flag back as it was (this run's regions removed)
            state = now[1]
            regions = {k: v for k, v in state.regions.items() if k not in (north, south)}
            store.write(FlagChange(FLAG, FlagState(state.enabled, regions, state.platforms,
                                                   state.rollout, state.value),
                                   "e2e-test", int(time.time() * 1000), "browser test: cleanup"))
