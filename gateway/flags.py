"""The flags in one gateway process: followed from Redis, resolved per client, pushed live.

``FlagFeed`` loads the current flags (``RedisKeys.flags``) and then follows the change stream
(``RedisKeys.flags_log``) with a blocking ``XREAD``; a change newer than what it holds replaces
that flag's state. Every ``flags`` subscriber is a hub subscription whose position is its
``Context`` (region, platform, session); on a change each subscriber's answer is resolved
(``schemas.flags.resolve``, a few comparisons per flag once the sticky buckets are known) and
the message bytes are encoded once per distinct answer, so 20,000 clients of one region share a
handful of encodings. When Redis is down the last flags held stay in force; a process that
never read them serves the registry's safe defaults (``schemas.features``), as clients do.

The degradation level is a flag too: ``level`` is what the shell consults to shed P2 work
(the "N watching" relay, P2 notifications, heartbeats sampled), to conflate score updates at
level 2 and to serve the panic copies at level 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.hub import Hub, text_frame
from runtime.eventloop import raise_if_cancelled
from schemas import protocol as p
from schemas.features import P2_NAMES
from schemas.flags import (
    FLAGS_KEY,
    FLAGS_LOG_KEY,
    Context,
    FlagError,
    FlagState,
    bucket,
    decode,
    effective_level,
    resolve,
    states_of,
)

log = logging.getLogger("stumpcast.gateway.flags")
_U = b"u"
SLICE = 256  # clients per slice of a flags push (see ``FlagFeed.publish``)


class FlagFeed:
    def __init__(self, redis: Any, hub: Hub, block_ms: int = 1000) -> None:
        self.redis = redis
        self.hub = hub
        self.block_ms = block_ms
        self.states: dict[str, FlagState] = {}
        self.versions: dict[str, int] = {}
        self.version = -1
        self.level = 0
        self.loaded = False
        self.changes = 0
        self.on_level: Callable[[int], None] | None = None
        self._push: asyncio.Task[int] | None = None  # the push of the last change
        self._last_id = "$"

    # -- what the shell asks ---------------------------------------------------------------

    def answers(self, ctx: Context) -> dict[str, bool]:
        return resolve(self.states, ctx)

    def message(self, ctx: Context) -> bytes:
        return p.flags(self.version, self.level, self.answers(ctx))

    @property
    def shed_p2(self) -> bool:
        return self.level >= 1

    # -- following Redis ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._follow()
        finally:
            if self._push is not None:
                self._push.cancel()  # a stopping gateway pushes nothing more

    async def _follow(self) -> None:
        backoff = 0.2
        while True:
            raise_if_cancelled()  # a stop's cancel lost in redis-py's send (runtime.eventloop)
            try:
                if not self.loaded:
                    await self.load()
                await self.follow_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: keep the last flags, retry
                log.warning("flags: redis unavailable; keeping the last flags",
                            extra={"error": str(exc)})
                self.loaded = False  # the stream may have been trimmed meanwhile: reload
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def load(self) -> None:
        # The stream's last id first: a change between the two reads is seen again, harmlessly.
        last = await self.redis.xrevrange(FLAGS_LOG_KEY, count=1)
        rows = await self.redis.hgetall(FLAGS_KEY)
        self._last_id = _text(last[0][0]) if last else "0-0"
        for flag, (version, state) in states_of(rows).items():
            self._take(flag, version, state)
        self.loaded = True
        self._changed()

    async def follow_once(self) -> None:
        reply = await self.redis.xread({FLAGS_LOG_KEY: self._last_id}, count=100,
                                       block=self.block_ms)
        changed = False
        for _key, rows in _rows(reply):
            for entry_id, fields in rows:
                self._last_id = _text(entry_id)
                try:
                    change = decode(fields[_U])
                except (FlagError, KeyError):
                    log.error("bad flag change in the stream", extra={"id": self._last_id})
                    continue
                changed |= self._take(change.flag, change.version, change.state)
        if changed:
            self._changed()

    def _take(self, flag: str, version: int, state: FlagState) -> bool:
        if version <= self.versions.get(flag, -1):
            return False
        self.versions[flag], self.states[flag] = version, state
        self.version = max(self.version, version)
        self.changes += 1
        return True

    def _changed(self) -> None:
        """The level takes effect now; the new answers go out in the background, so the next
        change (a level change must not wait) is read while a push to 10,000 clients is still
        going on. A newer change supersedes a push in flight: each message is the whole set,
        so the clients it had not reached yet get only the newer one."""
        level = effective_level(self.states)
        if level != self.level:
            self.level = level
            if self.on_level is not None:
                self.on_level(level)
        if self._push is not None and not self._push.done():
            self._push.cancel()
        self._push = asyncio.get_running_loop().create_task(self.publish(time.monotonic()))
        self._push.add_done_callback(_log_failure)

    async def pushed(self) -> None:
        """Wait for the push in flight, if any (tests, and a caller that needs it done)."""
        if self._push is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._push

    async def publish(self, now: float) -> int:
        """Every subscriber's answer, one encoding (and one frame) per distinct answer;
        returns how many were sent. Without a partial rollout the session does not matter,
        so each (region, platform) is resolved once, not once per client.

        In slices of ``SLICE`` clients with a yield between them: a flag change to 10,000
        clients of one process is ~100 ms of socket writes, which score updates (P1) must not
        wait behind. Nothing else changes the states meanwhile (only ``run``, which awaits
        this, takes changes); a client that subscribes during a yield gets the new answer at
        its join, and may get it again here."""
        subs = self.hub.channels.get(p.FLAGS)
        if not subs:
            return 0
        sticky = any(state.rollout < 100.0 for state in self.states.values())
        encoded: dict[tuple[bool, ...], bytes] = {}
        by_ctx: dict[Any, tuple[bytes, frozenset[str]]] = {}
        for i, (client, sub) in enumerate(list(subs.items())):
            if i and i % SLICE == 0:
                await asyncio.sleep(0)
            if client.closed:
                continue
            ctx: Context = sub.pos
            key = ctx if sticky else (ctx.region, ctx.platform)
            hit = by_ctx.get(key)
            if hit is None:
                answers = self.answers(ctx)
                values = tuple(answers.values())
                frame = encoded.get(values)
                if frame is None:
                    frame = encoded[values] = text_frame(
                        p.flags(self.version, self.level, answers))
                hit = by_ctx[key] = (frame, frozenset(k for k, on in answers.items() if not on))
            client.off = hit[1]
            self.hub.send_framed(client, hit[0], 1, now)
        return len(subs)

    def subscribe(self, client: Any, req_id: str | int | None, ctx: Context) -> None:
        """The shell's join: attach to the hub with the context as the position, then the
        ``subscribed`` reply and this client's flags, in one send."""
        data = self.join(client, ctx)
        self.hub.detach(client, p.FLAGS)
        self.hub.attach(client, p.FLAGS, ctx)
        pos = p.ChannelPosition(0, max(self.version, 0))
        reply = p.subscribed(req_id, p.FLAGS, pos, True, ctx.session)
        self.hub.send(client, [reply, data], time.monotonic())

    def sampled_out(self, client: Any, session_id: str, keep: int) -> bool:
        """Detailed heartbeats are P2: while shed, or where their flag is off for this client,
        only a sticky 1 in ``keep`` sessions' beats are forwarded (analytics then counts a
        sample: operations.md, "Feature flags and degradation")."""
        return _sampled_out(self, client, session_id, keep)

    def join(self, client: Any, ctx: Context) -> bytes:
        """A new subscriber: its answer now (the shell attaches it to the hub)."""
        answers = self.answers(ctx)
        client.off = frozenset(k for k, on in answers.items() if not on)
        return p.flags(self.version, self.level, answers)


def _sampled_out(feed: FlagFeed, client: Any, session_id: str, keep: int) -> bool:
    if not p2_shed(feed, client, "heartbeats_detailed"):
        return False
    return bucket("heartbeats_detailed", session_id) % keep != 0


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("flags push failed", exc_info=task.exception())


def p2_shed(feed: FlagFeed | None, client: Any, name: str) -> bool:
    """True when ``name`` must not reach ``client``: the level sheds P2, or its flag is off."""
    if feed is not None and feed.shed_p2 and name in P2_NAMES:
        return True
    off: frozenset[str] = getattr(client, "off", frozenset())
    return name in off


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows(reply: Any) -> list[tuple[Any, list[Any]]]:
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(k, rows) for k, rows in reply]

