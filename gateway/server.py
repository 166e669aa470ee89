"""The shell: the listening socket, HTTP endpoints on the same port, background loops, workers.

Everything that decides lives elsewhere: ``Session`` (what a client frame means), ``Hub`` (who
gets which bytes), ``Feed`` (what Redis says), ``wire`` (what bytes on the socket mean). Each
socket is a ``Connection`` (the gateway's own lean WebSocket protocol); this module admits its
request, passes its messages in with the time, and carries out the answers. Several processes
share one port with ``SO_REUSEPORT`` (``serve_workers``), so every core serves connections; each
process has its own feed and cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from typing import Any

from gateway import sendall, wire
from gateway.auth import (
    Claims,
    SessionIds,
    origin_allowed,
    session_from_request,
    token_from_request,
    verify_token,
)
from gateway.beats import HeartbeatForwarder
from gateway.config import GatewayConfig, config_from_settings
from gateway.connection import OPEN, Connection
from gateway.errors import AuthFailed, FeedUnavailable
from gateway.feed import Feed, UnknownMatch
from gateway.flags import FlagFeed
from gateway.housekeeping import P2Rate, WorstPerSecond, dump_stats, tame_gc
from gateway.http import HttpApi, HttpResponse, json_error
from gateway.hub import Client
from gateway.limits import PerAddress, TokenBucket
from gateway.metrics import GatewayMetrics, read_siblings
from gateway.panic import PanicStore
from gateway.session import Beat, Close, Join, Leave, Send, Session
from gateway.watching import WatchingRelay
from gateway.web import static as web_static
from runtime import redisconn
from runtime.eventloop import LoadProbe
from schemas import protocol as p
from schemas.flags import Context

log = logging.getLogger("stumpcast.gateway")
STOP_WAIT_S = 5.0  # what stop() waits for each of its tasks and clients before leaving them
__all__ = ["Gateway", "GatewayConfig", "config_from_settings", "serve"]
HTTP_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics")  # /metrics: a 404 pointing at
# the admin port, never the metrics themselves
KEEPALIVE_SLICES = 20


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.hub = config.hub(config.limits)
        self.accepts = TokenBucket(config.limits.accepts_per_second,
                                   config.limits.accept_burst, time.monotonic())
        self.per_ip = PerAddress(config.limits)
        self.session_ids = SessionIds(config.session_key or os.urandom(32))
        self.connections = 0
        self.closed_since_gc = 0  # connections ended since the last full collection
        self.rejected = 0
        self.pong_timeouts = 0
        self.sampled_out = 0  # heartbeats not forwarded while P2 is shed (a sticky sample is)
        self.conns: set[Connection] = set()  # every socket, from accept to close
        self._tasks: set[asyncio.Task[Any]] = set()
        self.p2_rate = P2Rate(time.monotonic())  # P2 offered a second (the controller)
        self.worst = WorstPerSecond(time.monotonic())  # commit to written, worst a second
        self.server: Any = None
        self.port = config.port
        self.feed: Feed
        self.api: HttpApi
        self.metrics: GatewayMetrics

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        redis = redisconn.connect(cfg.redis_url, cfg.redis_auth, asyncio=True,
                                  cluster=cfg.redis_cluster, socket_connect_timeout=2,
                                  socket_timeout=5)
        reader = redisconn.connect(cfg.redis_url, cfg.redis_auth, asyncio=True,
                                   cluster=cfg.redis_cluster, socket_connect_timeout=2,
                                   single_connection_client=True)
        siblings = None
        if cfg.stats_path is not None:
            stats_dir = cfg.stats_path.parent
            siblings = lambda: read_siblings(stats_dir, time.time())  # noqa: E731
        self.metrics = GatewayMetrics(cfg.worker, self.read_stats, siblings)
        self.feed = Feed(redis, reader, self.hub, cfg.limits.recovery_max,
                         on_latency=self._delivered)
        self.feed.on_fanout = self.metrics.fanout.observe
        self.api = HttpApi(self.feed, PanicStore(cfg.panic_dir, cfg.panic_flag),
                           self.metrics, cfg.max_lag, auth=cfg.auth)
        self.admin: Any = None
        if cfg.admin_port is not None:
            from runtime.endpoints import application
            from runtime.endpoints import serve as serve_admin

            self.admin = await serve_admin(application(self.api.health), cfg.admin_port,
                                           cfg.admin_host, reuse_port=True)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), cfg.host, cfg.port,
                                               reuse_port=True, backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]
        # The hub's batch writer: the native send loop, on the configured threads.
        self.hub.send_many = functools.partial(sendall.send_all_failures,
                                               threads=cfg.send_threads)
        self.flags = FlagFeed(redis, self.hub)
        self.flags.on_level = self._on_level
        self.feed.shed_p2 = lambda: self.flags.shed_p2
        self.api.forced_panic = lambda: self.flags.level >= 3
        self.watching = WatchingRelay(redis, self.hub, flags=self.flags)
        self.beats = HeartbeatForwarder(cfg.kafka)
        self.load = LoadProbe()  # the degradation controller's gateway signals
        for coro in (self.feed.run(), self.feed.watch_positions(), self._sweep(),
                     self._save_panic_copies(), dump_stats(self), self._keepalive(),
                     self.watching.run(), self.flags.run(), self.feed.conflate_loop(),
                     self.load.run()):
            self.spawn(coro)
        if cfg.tame_gc:
            self.spawn(tame_gc(self))
        with contextlib.suppress(FeedUnavailable):
            await self.feed.check_positions()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()  # no new connections; the open ones are told to go away
            for conn in list(self.conns):
                conn.close(p.CloseCode.GOING_AWAY, "server shutting down")
            deadline = time.monotonic() + STOP_WAIT_S
            while self.conns and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for conn in list(self.conns):
                conn.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
        # Bounded: a rolling restart must not hang on a task that does not take its
        # cancellation, or on a Redis client whose close waits for a cancelled blocking read.
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            if stuck:
                log.error("gateway stop: tasks still running, left behind",
                          extra={"tasks": sorted(str(t.get_coro()) for t in stuck)})
        if getattr(self, "admin", None) is not None:
            await self.admin.cleanup()
        if getattr(self, "beats", None) is not None:
            await asyncio.to_thread(self.beats.close)
        for client in (self.feed.redis, self.feed.reader):
            try:
                await asyncio.wait_for(client.aclose(), STOP_WAIT_S)
            except TimeoutError:
                log.error("gateway stop: a Redis client did not close, left behind")
            except Exception:  # noqa: BLE001, S110 - closing: the connection may be gone already
                pass

    def _delivered(self, seconds: float) -> None:
        self.metrics.latency.observe(seconds)
        self.worst.observe(seconds, time.monotonic())

    def _on_level(self, level: int) -> None:
        """A new degradation level (a flag change): what this process does differently."""
        self.feed.conflate = self.config.conflate_seconds if level >= 2 else 0.0
        log.warning("degradation level", extra={"level": level, "worker": self.config.worker})

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            if self.hub.backlog:
                self.hub.sweep(time.monotonic())

    async def _keepalive(self) -> None:
        """Ping every connection from one loop, and drop peers that stopped answering.

        One task for every connection, not a timer each: a connection only remembers when its
        unanswered ping went out (``ping_at``). A connection whose ping is unanswered after
        ``ping_timeout`` is aborted: a vanished peer (no FIN, no RST) would otherwise hold its
        socket and subscriptions.
        """
        interval = self.config.ping_interval
        if not interval:
            return
        timeout = self.config.ping_timeout or interval
        # Spread over the interval: one slice of the connections per tick, so their pongs
        # come back in small waves instead of 10k callbacks queued ahead of the next update.
        slices, tick = KEEPALIVE_SLICES, 0
        while True:
            await asyncio.sleep(interval / slices)
            await self.ping_sweep(asyncio.get_running_loop().time(), timeout,
                                  tick % slices, slices)
            tick += 1

    async def ping_sweep(self, now: float, timeout: float, part: int = 0,
                         parts: int = 1) -> int:
        """Keepalive for slice ``part`` of ``parts`` of the connections; returns how many
        were aborted."""
        dead, hwm = 0, self.config.limits.write_high_water
        for i, conn in enumerate(list(self.conns)[part::parts]):
            if conn.state != OPEN:
                continue
            if conn.ping_at:
                if now - conn.ping_at >= timeout:
                    dead += 1
                    self.pong_timeouts += 1
                    conn.abort()  # connection_lost ends its session and the hub drops it
                continue  # still within the timeout: one ping in flight is enough
            if conn.buffered() >= hwm:
                continue  # a slow reader is the hub's business (write timeout, SLOW close)
            conn.ping(now)
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let deliveries through during a large sweep
        return dead

    async def _save_panic_copies(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            for m, cache in list(self.feed.matches.items()):
                args = (m, cache.epoch, cache.seq, cache.ts, cache.card_json())
                await asyncio.to_thread(self.api.panic.save, *args)

    def read_stats(self) -> dict[str, Any]:
        s, f = self.hub.stats, getattr(self, "feed", None)
        out: dict[str, Any] = {
            "connections": self.connections, "subscriptions": self.hub.subscriptions(),
            "queue_bytes": s.queued_bytes, "backlogged_clients": len(self.hub.backlog),
            "messages_out": s.messages_out, "bytes_out": s.bytes_out, "writes": s.writes,
            "conflated": s.conflated, "slow_closes": s.slow_closes, "rejected": self.rejected,
            "pong_timeouts": self.pong_timeouts}
        flags, load = getattr(self, "flags", None), getattr(self, "load", None)
        if flags is not None and load is not None:  # the degradation controller reads these
            out.update(level=flags.level, flags_version=flags.version,
                       loop_lag_ms=load.lag_ms, cpu=load.cpu, cpu_wait=load.wait,
                       beats_sampled_out=self.sampled_out,
                       p2_offered=self.p2_rate.rate, p2_sent=self.hub.stats.p2_sent,
                       delivery_worst_ms=self.worst.last * 1000)
        api = getattr(self, "api", None)
        if api is not None:  # panic mode: the HTTP API serves the disk copies, marked stale
            out["panic"] = int(api.panic_mode())
        if f is not None:
            out.update(feed_lag_seconds=f.stats.lag_seconds, cached_matches=len(f.matches),
                       redis_loads=f.stats.loads + f.stats.note_loads,
                       cache_answers=f.stats.cache_answers,
                       redis_answers=f.stats.redis_answers, resets=f.stats.resets)
        return out

    # -- the upgrade: HTTP API, origin, accept rate, auth --------------------------------------

    def admit(self, conn: Connection, request: wire.Request) -> Any:
        """What a request head gets: an HTTP response (bytes), an HTTP answer still to be
        read (a coroutine giving bytes), or (claims or the auth error, session id) to upgrade.

        Rate limits come before the token check, so a flood is refused before it costs a
        signature verification; a bad token is answered after the upgrade (4001), so browsers
        see the code."""
        path, headers = request.path, request.headers
        if path.startswith(HTTP_PREFIXES):
            return self._api(path, headers)
        if web_static.is_static(path, headers):  # the live page (issue 8)
            return _response(web_static.serve(path))
        if not origin_allowed(headers.get("Origin"), self.config.auth):
            self.rejected += 1
            return _response(json_error(403, "origin_not_allowed", "this origin may not "
                                        "connect; see STUMPCAST_GATEWAY_ALLOWED_ORIGINS"))
        why = self.per_ip.admit(conn.ip, time.monotonic())
        if why is not None:  # checked first: one address must not use up the budget below
            self.rejected += 1
            return _response(json_error(429, "address_rate_limited", f"{why}; retry with "
                                        "backoff", (("Retry-After", "1"),)))
        if not self.accepts.take(time.monotonic()):
            self.rejected += 1
            return _response(json_error(503, "accept_rate_limited", "too many new connections;"
                                        " retry with backoff", (("Retry-After", "1"),)))
        claims: Claims | AuthFailed
        try:
            claims = verify_token(token_from_request(path, headers), self.config.auth,
                                  time.time())
        except AuthFailed as exc:
            self.rejected += 1
            claims = exc
        return claims, self.session_ids.issue(session_from_request(path))

    async def _api(self, path: str, headers: Any) -> bytes:
        return _response(await self.api.handle("GET", path, headers))

    # -- one connection ------------------------------------------------------------------------

    def opened(self, conn: Connection, admitted: tuple[Claims | AuthFailed, str]) -> None:
        """The upgrade is done: a session for good claims, a close with the code for bad."""
        claims, session_id = admitted
        if not isinstance(claims, Claims):
            conn.close(claims.close_code or p.CloseCode.UNAUTHORIZED, str(claims)[:120])
            return
        conn.client = Client(conn)
        conn.session = session = Session(claims, self.config.limits, time.time(), session_id)
        conn.expiry = self._expire_at(claims, conn.client, session)
        self.per_ip.opened(conn.ip)
        self.connections += 1

    def closed(self, conn: Connection) -> None:
        client = conn.client
        assert client is not None
        self.per_ip.closed(conn.ip)
        self.connections -= 1
        self.closed_since_gc += 1
        client.closed = True
        self.hub.drop(client)

    def _expire_at(self, claims: Claims, client: Client, session: Session) -> Any:
        """Close the connection (4001) when its token expires, whether or not the client
        sends anything: a passive listener must not keep receiving on an expired token."""
        if claims.exp is None:
            return None

        def expire() -> None:
            for out in session.tick(time.time()) or [Close(p.CloseCode.TOKEN_EXPIRED,
                                                          "token expired")]:
                if isinstance(out, Close):
                    self.hub.close(client, out.code, out.reason)

        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, claims.exp - time.time()) + 0.01, expire)

    def carry_out(self, client: Client, session: Session, out: Any) -> None:
        """What a message asks, but a join (``join``: it may read Redis)."""
        now = time.monotonic()
        if isinstance(out, Send):
            self.hub.send(client, [out.data], now)
        elif isinstance(out, Leave):
            self.hub.detach(client, out.channel.key)
            self.hub.send(client, [p.unsubscribed(out.req_id, out.channel.key)], now)
        elif isinstance(out, Close):
            self.hub.close(client, out.code, out.reason)
        elif isinstance(out, Beat) and self.flags.sampled_out(client, session.session_id,
                                                               self.config.heartbeat_sample):
            self.sampled_out += 1
        elif isinstance(out, Beat) and not self.beats.forward(dict(out.fields)):
            reason = "heartbeats are not accepted here" if not self.beats.enabled else "busy"
            self.hub.send(client, [p.error(p.ErrorCode.UNAVAILABLE, reason)], now)

    async def join(self, client: Client, session: Session, join: Join) -> None:
        key, match_id = join.channel.key, join.channel.match_id
        if join.channel.kind == p.FLAGS:
            region, platform = join.context or ("unknown", "unknown")
            self.flags.subscribe(client, join.req_id, Context(region, platform,
                                                              session.session_id))
            return
        try:
            if join.channel.kind == p.MATCH:
                cache = await self.feed.match(match_id)
                catch = cache.catch_up(join.since)
                pos: Any = catch.position.seq
            else:
                await self.feed.match(match_id)  # notes only of a match that exists
                catch, pos = await self._join_notes(match_id, join.since)
        except UnknownMatch:
            session.join_failed(key)
            self.hub.send(client, [p.error(p.ErrorCode.UNKNOWN_MATCH, f"no match {match_id}",
                                           join.req_id, key)], time.monotonic())
            return
        except FeedUnavailable as exc:
            session.join_failed(key)
            self.hub.send(client, [p.error(p.ErrorCode.UNAVAILABLE, str(exc)[:200],
                                           join.req_id, key)], time.monotonic())
            return
        self.feed.stats.cache_answers += 1
        # No await between here and the send: nothing can be published in between.
        self.hub.detach(client, key)
        self.hub.attach(client, key, pos)
        reply = p.subscribed(join.req_id, key, catch.position, catch.recovered,
                             session.session_id)
        self.hub.send(client, [reply, *catch.frames], time.monotonic())

    async def _join_notes(self, match_id: str, since: p.ChannelPosition | None) -> tuple[Any, Any]:
        from gateway.cache import CatchUp

        notes = await self.feed.notes_cache(match_id)
        catch = notes.catch_up(since)
        if catch is None and since is not None:
            rows = await self.feed.notes_from_redis(match_id, since)
            if rows is None:
                catch = CatchUp(False, notes.position, [])
            else:
                top = max([pos for pos, _ in rows], default=(since.seq, since.k))
                newer = [f for s, k, f in notes.entries if (s, k) > top]
                catch = CatchUp(True, notes.position, [f for _, f in rows] + newer)
        assert catch is not None
        return catch, (catch.position.seq, catch.position.k)


def _response(resp: HttpResponse) -> bytes:
    return wire.http_response(resp.status, resp.body, resp.content_type, resp.headers)


async def serve(config: GatewayConfig, ready: asyncio.Event | None = None) -> None:
    """Run one gateway process until cancelled."""
    gateway = Gateway(config)
    await gateway.start()
    log.info("gateway listening", extra={"port": config.port, "worker": config.worker,
                                         "pid": os.getpid(),
                                         "hub": getattr(config.hub, "__name__", "?")})
    if ready is not None:
        ready.set()
    try:
        await asyncio.Future()
    finally:
        await gateway.stop()
