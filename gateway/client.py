"""A Python client for the gateway: reconnect with full-jitter backoff, resume by position.

``ClientState`` is the pure part: it applies gateway messages to per-channel state (the card,
its position, the notes seen) and says when continuity is lost and a channel must be
re-subscribed from its last good position. ``GatewayClient.events()`` is the shell: it connects,
subscribes (with ``since`` after a reconnect), feeds frames to the state, yields what changed,
and on a reconnect-range close or a network error sleeps ``backoff(attempt)`` and reconnects.
A terminal close code (4100-4199) ends the iteration with ``GatewayClosed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import patch as patch_format
from schemas import protocol as p
from schemas.features import defaults


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0,
            rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (spreads reconnect storms)."""
    return rand() * min(cap, base * 2 ** min(attempt, 30))


class GatewayClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed by the gateway: {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class ChannelState:
    position: p.ChannelPosition | None = None
    card: Any = None
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    kind: str          # "snapshot", "update", "note", "subscribed", "error", "resync"
    channel: str
    message: dict[str, Any]


class ClientState:
    def __init__(self, channels: list[str], keep_notes: int = 50,
                 context: dict[str, str] | None = None) -> None:
        self.channels = {c: ChannelState() for c in channels}
        self.keep_notes = keep_notes
        # Feature flags: the registry's safe defaults until (or without) the flags channel;
        # the last answer stays in force while disconnected.
        self.flags: dict[str, bool] = defaults()
        self.level = 0
        self.context = context or {"platform": "python"}

    def flag(self, name: str) -> bool:
        return self.flags.get(name, True)

    def subscribe_messages(self) -> list[bytes]:
        return [p.subscribe_message(c, st.position, req_id=c,
                                    context=self.context if c == p.FLAGS else None)
                for c, st in self.channels.items()]

    def apply(self, raw: bytes | str) -> list[Event]:
        msg = orjson.loads(raw)
        kind, channel = msg.get("type"), p.channel_of(msg)
        st = self.channels.get(channel) if channel else None
        if st is None or channel is None:
            return [Event(str(kind), channel or "", msg)]
        if kind == "subscribed":
            # A recovered resume is followed by the replay, which moves the position itself.
            if st.position is None or not msg["recovered"]:
                st.position = p.ChannelPosition(msg["epoch"], msg["seq"], msg.get("k", 0))
        elif kind == "snapshot":
            st.card, st.position = msg["card"], p.ChannelPosition(msg["epoch"], msg["seq"])
        elif kind == "update":
            return self._update(channel, st, msg)
        elif kind == "flags":
            self.flags = {**defaults(), **msg.get("flags", {})}
            self.level = int(msg.get("level", 0))
        elif kind == "note":
            st.position = p.ChannelPosition(0, msg["seq"], msg["k"])
            st.notes = [*st.notes, msg["note"]][-self.keep_notes:]
        return [Event(str(kind), channel, msg)]

    def _update(self, channel: str, st: ChannelState, msg: dict[str, Any]) -> list[Event]:
        pos = st.position
        if pos is not None and msg["epoch"] == pos.epoch and msg["seq"] <= pos.seq:
            return []  # already applied
        if pos is None or msg["epoch"] != pos.epoch or msg["prev_seq"] != pos.seq \
                or (st.card is None and "card" not in msg):
            return [Event("resync", channel, msg)]
        try:
            st.card = msg["card"] if "card" in msg else patch_format.apply(st.card, msg["patch"])
        except patch_format.PatchError:
            return [Event("resync", channel, msg)]
        st.position = p.ChannelPosition(msg["epoch"], msg["seq"])
        return [Event("update", channel, msg)]


class GatewayClient:
    def __init__(self, url: str, channels: list[str], token: str | None = None,
                 base: float = 0.5, cap: float = 30.0,
                 heartbeat: Callable[[], dict[str, Any]] | None = None,
                 heartbeat_interval: float = 10.0) -> None:
        self.url = url if token is None else f"{url}{'&' if '?' in url else '?'}token={token}"
        self.state = ClientState(channels)
        self.base, self.cap = base, cap
        self.reconnects = 0
        self.heartbeat = heartbeat  # the viewer's heartbeat fields, sent while connected
        self.heartbeat_interval = heartbeat_interval
        self.session: str | None = None  # issued by the gateway; presented again on reconnect

    def _connect_url(self) -> str:
        if self.session is None:
            return self.url
        return f"{self.url}{'&' if '?' in self.url else '?'}session={self.session}"

    @contextlib.asynccontextmanager
    async def _beating(self, ws: Any) -> AsyncIterator[None]:
        """Send the viewer's heartbeat every interval while this connection lasts."""
        if self.heartbeat is None:
            yield
            return
        beat = self.heartbeat

        async def loop() -> None:
            while True:
                await ws.send(p.heartbeat_message(beat()).decode())
                await asyncio.sleep(self.heartbeat_interval)

        task = asyncio.ensure_future(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _receive(self, ws: Any) -> AsyncIterator[Event]:
        async for raw in ws:
            for event in self.state.apply(raw):
                if event.kind == "subscribed" and event.message.get("session"):
                    self.session = str(event.message["session"])
                if event.kind == "resync":  # resume from the last good position
                    st = self.state.channels[event.channel]
                    await ws.send(p.subscribe_message(event.channel, st.position,
                                                      event.channel).decode())
                yield event

    async def events(self) -> AsyncIterator[Event]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        attempt = 0
        while True:
            try:
                async with connect(self._connect_url(), compression=None,
                                   max_size=2**22) as ws:
                    for frame in self.state.subscribe_messages():
                        await ws.send(frame.decode())
                    attempt = 0
                    async with self._beating(ws):  # after subscribing: beats need the match
                        async for event in self._receive(ws):
                            yield event
                    code, reason = ws.close_code, ws.close_reason or ""
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else str(exc)
            except (TimeoutError, OSError, InvalidStatus) as exc:
                code, reason = None, str(exc)
            if not p.should_reconnect(code):
                raise GatewayClosed(code, reason)
            await asyncio.sleep(backoff(attempt, self.base, self.cap))
            attempt += 1
            self.reconnects += 1
