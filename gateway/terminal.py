"""`stumpcast watch MATCH_ID`: the live scorecard in the terminal, over the gateway client.

The shell around ``gateway.terminal_render`` (pure: scorecard document -> lines). It follows the
match's scorecard and notifications with ``GatewayClient`` (reconnects, resumes by position)
and shows each change in one of three ways:

* ``screen`` (stdout is a terminal): the whole screen redrawn in place (cursor home, each line
  cleared to its end, the rest of the screen cleared), the data's credit on the bottom line;
* ``blocks`` (stdout is not a terminal): each new card as a plain block of lines, no escape
  codes, the credit once;
* ``progress`` (``--progress``; what ``stumpcast demo`` uses off a terminal): a plain line per
  innings, wicket, fifty, completed over and innings end, and the result.

Like the live page, it runs until stopped (Ctrl-C): a "result" may still be followed by a
super over, and a correction may change it.

A match the gateway does not know yet (``unknown_match``) is asked for again every second, so
``watch`` may be started before the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, cast

from gateway.client import ClientState, Event, GatewayClient, GatewayClosed
from gateway.terminal_render import WIDTH, card_lines, progress_lines, screen_lines
from schemas import protocol as p
from schemas.scorecard import CREDIT

RETRY_S = 1.0  # between asks for a match the gateway does not know yet
HOME, CLEAR_LINE, CLEAR_BELOW, CLEAR = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
WAITING_CODES = {str(p.ErrorCode.UNKNOWN_MATCH), str(p.ErrorCode.UNAVAILABLE)}


@dataclass(frozen=True)
class Frame:
    """What the viewer has at one moment: the card, its position, the latest note, a status."""

    card: dict[str, Any] | None
    position: p.ChannelPosition | None
    note: dict[str, Any] | None
    status: str


def frame_of(state: ClientState, match_id: str, what: str) -> Frame:
    match = state.channels[f"match:{match_id}"]
    # The registry (schemas/features.py): P1 notes are "notes_p1", the rest "notes_p2"; the
    # flags are the safe defaults until the gateway's flags channel answers.
    notes = [n for n in state.channels[f"notes:{match_id}"].notes
             if state.flag("notes_p1" if n.get("priority") == "P1" else "notes_p2")]
    pos = match.position
    where = f"seq {pos.seq}" if pos else "waiting"
    if state.level:
        where += f" · degraded (level {state.level})"
    card = match.card if isinstance(match.card, dict) else None
    return Frame(card, pos, notes[-1] if notes else None, f"match {match_id} · {where} · {what}")


class View(Protocol):
    def start(self) -> None: ...
    def show(self, frame: Frame) -> None: ...
    def stop(self) -> None: ...


def terminal_size() -> tuple[int, int]:
    """(columns, rows), asked again at every frame: a resized window is drawn to its size."""
    size = shutil.get_terminal_size((WIDTH, 24))
    return size.columns, size.lines


class ScreenView:
    """The whole terminal redrawn in place; no scrolling."""

    def __init__(self, out: TextIO, size: Callable[[], tuple[int, int]] | None = None) -> None:
        self.out = out
        self.size = size or terminal_size

    def start(self) -> None:
        self.out.write(HIDE_CURSOR + CLEAR + HOME)
        self.out.flush()

    def show(self, frame: Frame) -> None:
        columns, rows = self.size()
        lines = screen_lines(frame.card, frame.status, frame.note, min(columns, WIDTH), rows)
        # One write per frame: a reader of the screen never sees half of two cards.
        self.out.write(HOME + (CLEAR_LINE + "\n").join(lines) + CLEAR_LINE + CLEAR_BELOW)
        self.out.flush()

    def stop(self) -> None:
        self.out.write(SHOW_CURSOR + "\n")
        self.out.flush()


class BlocksView:
    """Each new card as a plain block of lines (a pipe or a log file)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown: p.ChannelPosition | None = None
        self.credited = False

    def start(self) -> None:
        pass

    def show(self, frame: Frame) -> None:
        if frame.card is None or frame.position == self.shown:
            return
        self.shown = frame.position
        rule = f"-- seq {frame.position.seq if frame.position else '?'} "
        self.out.write("\n".join([rule.ljust(WIDTH, "-"), *card_lines(frame.card)]) + "\n\n")
        if not self.credited:
            self.credited = True
            self.out.write(f"{frame.card.get('credit') or CREDIT}\n\n")
        self.out.flush()

    def stop(self) -> None:
        pass


class ProgressView:
    """A plain line per innings, wicket, milestone, over and innings end, and the result."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.prev: dict[str, Any] | None = None

    def start(self) -> None:
        pass

    def show(self, frame: Frame) -> None:
        if frame.card is None:
            return
        lines = progress_lines(self.prev, frame.card)
        if self.prev is None:
            lines.append(frame.card.get("credit") or CREDIT)
        self.prev = frame.card
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def stop(self) -> None:
        pass


def make_view(mode: str, out: TextIO) -> View:
    if mode == "auto":
        mode = "screen" if out.isatty() else "blocks"
    views: dict[str, Callable[[TextIO], View]] = {
        "screen": ScreenView, "blocks": BlocksView, "progress": ProgressView}
    return views[mode](out)


def _status(event: Event, client: GatewayClient) -> str:
    if event.kind == "error":
        return f"error: {event.message.get('message')}"
    return "live" + (f" · reconnects {client.reconnects}" if client.reconnects else "")


def _not_there_yet(event: Event, match_id: str) -> bool:
    return (event.kind == "error" and event.channel == f"match:{match_id}"
            and str(event.message.get("code")) in WAITING_CODES)


def _heartbeat(match_id: str) -> Callable[[], dict[str, Any]]:
    session_id = f"watch-{uuid.uuid4().hex[:16]}"

    def beat() -> dict[str, Any]:
        # A terminal shows the live edge: its "playhead" is now, and it never buffers.
        return {"session_id": session_id, "match_id": match_id, "region": "unknown",
                "cdn": "gateway", "bitrate_kbps": 0, "buffering_ms": 0,
                "playhead_ms": int(time.time() * 1000), "device": "terminal"}

    return beat


async def _follow_once(client: GatewayClient, match_id: str, view: View) -> None:
    """Show every change; return when the gateway does not have the match (yet)."""
    # events() is an async generator (typed as an iterator): closed here, not when collected,
    # so leaving the loop closes the connection at once.
    gen = cast(AsyncGenerator[Event, None], client.events())
    async with contextlib.aclosing(gen) as events:
        async for event in events:
            if _not_there_yet(event, match_id):
                view.show(frame_of(client.state, match_id,
                                   f"no scorecard yet; asking again every {RETRY_S:g} s"))
                return
            view.show(frame_of(client.state, match_id, _status(event, client)))


async def follow(url: str, match_id: str, token: str | None, view: View) -> None:
    """Follow the match until cancelled; ``GatewayClosed`` on a terminal close."""
    beat = _heartbeat(match_id)
    for attempt in itertools.count():
        client = GatewayClient(url, [f"match:{match_id}", f"notes:{match_id}", p.FLAGS], token,
                               heartbeat=beat)
        client.state.context = {"platform": "terminal"}
        if attempt == 0:  # later attempts keep showing why they wait
            view.show(frame_of(client.state, match_id, f"connecting to {url}"))
        await _follow_once(client, match_id, view)
        await asyncio.sleep(RETRY_S)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def watch(url: str, match_id: str, token: str | None, mode: str = "auto",
          out: TextIO | None = None) -> int:
    view = make_view(mode, out or sys.stdout)
    # SIGTERM (the demo stopping its children) ends the viewer like Ctrl-C: the terminal gets
    # its cursor back.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    view.start()
    error = None
    try:
        asyncio.run(follow(url, match_id, token, view))
    except KeyboardInterrupt:
        pass
    except GatewayClosed as exc:
        error = str(exc)
    finally:
        view.stop()
        signal.signal(signal.SIGTERM, previous)
    if error:
        print(f"watch: {error}", file=sys.stderr)
        return 1
    return 0
