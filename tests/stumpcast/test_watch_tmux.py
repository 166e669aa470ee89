"""`stumpcast watch` in a real terminal: tmux runs it at 80x24 against a real gateway while a
real match is replayed live through the real stack, and the screen is read back.

A streams worker and a gateway of our own (free ports, own process groups, the e2e tests'
``Proc``) fold the events of ``stumpcast live-replay`` into Redis and push them to the viewer.
The viewer is started before the replay, so it first waits for a match the gateway does not
know. Every stable screen read during the replay names the position it shows (``seq N``); its
card area must be exactly what the pure fold of events 1..N, drawn by ``gateway.terminal_render``,
gives: the score line and the batters' rows first, then every other line. Match data:
Cricsheet (cricsheet.org), ODC-BY 1.0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import terminal_render as view
from runtime.redisconn import sync_redis
from schemas.settings import Settings
from schemas.store_access import RedisUser
from schemas.topology import REDIS_PREFIX, RedisKeys
from streams import cricsheet
from streams.fold import Card, apply
from tests.e2e.e2e_helpers import MATCH_FILE, ROOT, Proc, free_port

pytestmark = pytest.mark.stack

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
COLS, ROWS = 80, 24
SPEED, MAX_GAP = 500.0, 0.5  # the 2023 final in about 20 s
STATUS = re.compile(r" · seq (\d+) · ")


def fold_cards(match_id: str) -> list[dict[str, Any]]:
    """The scorecard document after each event (index = seq - 1), by the pure fold."""
    card, out = Card.empty(match_id), []
    for event in cricsheet.import_match(cricsheet.load(MATCH_FILE), match_id):
        card = apply(card, event)
        out.append(card.scorecard().to_json())
    return out


class Terminal:
    """A tmux server of our own (its own socket) with one 80x24 window."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        exports = [f"{k}={v}" for k, v in env.items()]
        # remain-on-exit before the window exists: a viewer that crashes at once stays readable
        self.tmux("-u", "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
                  "new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-c", str(ROOT),
                  "env", *exports, *argv)

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", "0").split("\n")[:ROWS]

    def stable_screen(self, settle: float = 0.15) -> list[str]:
        """A screen read twice, ``settle`` apart, with the same text (no frame half drawn)."""
        while True:
            first = self.screen()
            time.sleep(settle)
            if self.screen() == first:
                return first

    def stop(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], check=False,
                       capture_output=True, timeout=10)


@pytest.fixture
def pipeline(stack: Settings) -> Iterator[tuple[dict[str, str], int]]:
    """Our own streams worker and gateway on free ports: (their env, the gateway's port)."""
    tag = uuid.uuid4().hex[:8]
    port, metrics = free_port(), free_port()
    env = {"STUMPCAST_LOG_FORMAT": "text", "STUMPCAST_GATEWAY_PORT": str(port),
           "STUMPCAST_GATEWAY_ADMIN_PORT": str(free_port()),
           "STUMPCAST_STREAMS_METRICS_PORT": str(metrics),
           "STUMPCAST_STREAMS_INSTANCE_ID": f"test-watch-{tag}",
           "STUMPCAST_GATEWAY_PANIC_DIR": f"/tmp/stumpcast-watch-{tag}/panic",
           "STUMPCAST_GATEWAY_PANIC_FLAG": f"/tmp/stumpcast-watch-{tag}/PANIC"}
    procs = [Proc(f"watch-{tag}-streams", ["streams", "worker"], env,
                  f"http://127.0.0.1:{metrics}/readyz"),
             Proc(f"watch-{tag}-gateway", ["gateway", "serve"], env,
                  f"http://127.0.0.1:{port}/readyz")]
    try:
        for proc in procs:
            proc.start(timeout=60)
        yield env, port
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(f"/tmp/stumpcast-watch-{tag}", ignore_errors=True)


@pytest.fixture
def match_id(stack: Settings) -> Iterator[str]:

    match_id = f"test-watch-{uuid.uuid4().hex[:12]}"
    yield match_id
    r = sync_redis(stack, RedisUser.ADMIN)
    keys = list(r.scan_iter(f"{REDIS_PREFIX}*{match_id}*", count=1000))
    if keys:
        r.delete(*keys)
    r.zrem(RedisKeys.live_matches, match_id)
    r.close()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if not Path(TMUX).exists():
        pytest.skip(f"no tmux at {TMUX}")
    term = Terminal(f"stumpcast-test-{uuid.uuid4().hex[:8]}")
    yield term
    term.stop()


def check(screen: list[str], cards: list[dict[str, Any]]) -> int:
    """The screen's card area is the fold's card at the seq the status line names; the seq."""
    shown = "\n".join(screen)
    found = [m for line in screen if (m := STATUS.search(line))]
    assert found, f"no position on the screen:\n{shown}"
    seq = int(found[0].group(1))
    doc = cards[seq - 1]
    inn = view.current_innings(doc)
    if inn is not None:
        assert view.score_line(inn) in screen, f"seq {seq}: {view.score_line(inn)!r}\n{shown}"
        rows = view.batting_lines(inn)  # the header and a row per batter at the crease
        at = screen.index(rows[0]) if rows and rows[0] in screen else 0
        assert screen[at:at + len(rows)] == rows, f"seq {seq}: {rows}\n{shown}"
    body = view.card_lines(doc, COLS)
    assert [x.rstrip() for x in screen[:len(body)]] == body, f"seq {seq}\n{shown}"
    assert screen[-1].rstrip() == doc["credit"] and screen.count(screen[0]) == 1, shown
    return seq


def test_watch_draws_the_live_card_in_place_at_80_columns(
        pipeline: tuple[dict[str, str], int], match_id: str, terminal: Terminal) -> None:
    env, port = pipeline
    cards = fold_cards(match_id)
    terminal.start([sys.executable, "-m", "stumpcast", "watch", match_id,
                    "--url", f"ws://127.0.0.1:{port}/ws"], {**env, "LANG": "C.UTF-8"})
    deadline = time.monotonic() + 15
    while "no scorecard yet" not in "\n".join(terminal.screen()):
        assert time.monotonic() < deadline, "\n".join(terminal.screen())
        time.sleep(0.2)
    replay = Proc(f"{match_id}-replay", ["live-replay", str(MATCH_FILE), "--match-id", match_id,
                                         "--speed", str(SPEED), "--max-gap", str(MAX_GAP),
                                         "--quiet"], env).start()
    seen: set[int] = set()
    try:
        while replay.running():
            screen = terminal.stable_screen()
            if STATUS.search("\n".join(screen)) and not screen[0].startswith("Waiting"):
                seen.add(check(screen, cards))  # the card is there (not only its position)
            time.sleep(0.3)
        assert replay.popen is not None and replay.popen.returncode == 0, replay.log.read_text()
    finally:
        replay.stop()
    deadline = time.monotonic() + 15
    while (last := check(terminal.stable_screen(), cards)) != len(cards):
        assert time.monotonic() < deadline, f"stuck at seq {last} of {len(cards)}"
        time.sleep(0.3)
    seen.add(last)
    final = terminal.screen()
    assert "Result: Chennai Super Kings won by 5 wickets (0 balls left, DLS method)" in final
    mid_innings = {s for s in seen if cards[s - 1]["innings"]
                   and cards[s - 1]["innings"][-1]["batters_in"]}
    assert len(mid_innings) >= 5, f"too few screens read during the replay: {sorted(seen)}"
