"""The shell: websockets server, HTTP endpoints on the same port, background loops, workers.

Everything that decides lives elsewhere: ``Session`` (what a client frame means), ``Hub`` (who
gets which bytes), ``Feed`` (what Redis says). This module reads frames, passes them in with
the time, and carries out the answers. Several processes share one port with ``SO_REUSEPORT``
(``serve_workers``), so every core serves connections; each process has its own feed and cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import socket
import time
import weakref
from typing import Any

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
from gateway.errors import AuthFailed, FeedUnavailable, GatewayError
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


class WsSink:
    """The hub's view of one socket: raw frame writes, buffer size, close."""

    __slots__ = ("conn", "protocol", "transport", "gateway")

    def __init__(self, conn: Any, gateway: Gateway) -> None:
        self.conn = conn
        self.protocol = conn.protocol
        self.transport = conn.transport
        self.gateway = gateway

    def write(self, data: bytes) -> None:
        # After a close frame (state CLOSING) no data frame may follow (RFC 6455 §5.5.1).
        if self.protocol.state is _OPEN and not self.transport.is_closing():
            self.transport.write(data)

    def offer(self, data: bytes, high_water: int) -> bool:
        transport = self.transport
        if transport.get_write_buffer_size() >= high_water:
            return False
        if self.protocol.state is _OPEN and not transport.is_closing():
            transport.write(data)
        return True

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def close(self, code: int, reason: str) -> None:
        self.gateway.spawn(self.conn.close(code, reason[:120]))


_OPEN: Any = None


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
        # Claims (or the auth error) from the upgrade until the handler takes them. Kept off
        # the connection object: a new attribute there un-shares its __dict__ (~1.5 KB each).
        self._auth: weakref.WeakKeyDictionary[Any, tuple[Claims | AuthFailed, str]] = (
            weakref.WeakKeyDictionary())
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
        global _OPEN
        from websockets.asyncio.server import serve
        from websockets.protocol import State

        _OPEN = State.OPEN
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
        self.server = await serve(
            self.handle, cfg.host, cfg.port, process_request=self.process_request,
            compression=None, max_size=cfg.limits.hard_max_frame_bytes, max_queue=4,
            ping_interval=None, ping_timeout=None,  # one process-wide sweep, not a task each
            close_timeout=2, reuse_port=True, backlog=4096, server_header=None)
        self.port = self.server.sockets[0].getsockname()[1]
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
            self.server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
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

        websockets' own keepalive costs a task per connection (~2 KB each); this sweep uses
        its ``ping()`` (a waiter in ``pending_pings`` until the pong) from one task instead. A
        connection whose oldest ping is unanswered after ``ping_timeout`` is aborted: a
        vanished peer (no FIN, no RST) would otherwise hold its socket and subscriptions.
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
        from websockets.exceptions import ConnectionClosed

        dead = 0
        for i, conn in enumerate(list(self.server.connections)[part::parts]):
            if conn.protocol.state is not _OPEN:
                continue
            pending = conn.pending_pings
            if pending:
                oldest = min(stamp for _, stamp in pending.values())
                if now - oldest >= timeout:
                    dead += 1
                    self.pong_timeouts += 1
                    conn.transport.abort()  # the handler ends and the hub drops the client
                continue  # still within the timeout: one ping in flight is enough
            if conn.transport.get_write_buffer_size() >= self.config.limits.write_high_water:
                continue  # a slow reader is the hub's business (write timeout, SLOW close)
            with contextlib.suppress(ConnectionClosed):
                await conn.ping()
            if i % 250 == 249:
                await asyncio.sleep(0)  # let deliveries through (~5 ms slices) during a sweep
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

    async def process_request(self, conn: Any, request: Any) -> Any:
        path = request.path
        if path.startswith(HTTP_PREFIXES):
            return _response(await self.api.handle("GET", path, request.headers))
        if web_static.is_static(path, request.headers):  # the live page (issue 8)
            return _response(web_static.serve(path))
        if not origin_allowed(request.headers.get("Origin"), self.config.auth):
            self.rejected += 1
            return _response(json_error(403, "origin_not_allowed", "this origin may not "
                                        "connect; see STUMPCAST_GATEWAY_ALLOWED_ORIGINS"))
        why = self.per_ip.admit(_peer_ip(conn), time.monotonic())
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
            claims = verify_token(token_from_request(path, request.headers), self.config.auth,
                                  time.time())
        except AuthFailed as exc:  # answered after the upgrade, so browsers see the code
            self.rejected += 1
            claims = exc
        self._auth[conn] = (claims, self.session_ids.issue(session_from_request(path)))
        return None

    # -- one connection ------------------------------------------------------------------------

    async def handle(self, conn: Any) -> None:
        claims, session_id = self._auth.pop(conn, (None, ""))
        _forget_handshake(conn)
        if not isinstance(claims, Claims):
            exc = claims if isinstance(claims, AuthFailed) else AuthFailed("no credentials")
            await conn.close(exc.close_code or p.CloseCode.UNAUTHORIZED, str(exc)[:120])
            return
        if self.config.socket_send_buffer:
            sock = conn.transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.socket_send_buffer)
        client = Client(WsSink(conn, self))
        session = Session(claims, self.config.limits, time.time(), session_id)
        expiry = self._expire_at(claims, client, session)
        ip = _peer_ip(conn)
        self.per_ip.opened(ip)
        self.connections += 1
        try:
            async for raw in conn:
                for out in session.receive(raw, time.time()):
                    await self._carry_out(client, session, out)
        except GatewayError as exc:
            log.debug("connection ended", extra={"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug must not leak to other clients
            if not _is_closed(exc):
                log.exception("connection handler failed")
        finally:
            if expiry is not None:
                expiry.cancel()
            self.per_ip.closed(ip)
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

    async def _carry_out(self, client: Client, session: Session, out: Any) -> None:
        now = time.monotonic()
        if isinstance(out, Send):
            self.hub.send(client, [out.data], now)
        elif isinstance(out, Join):
            await self._join(client, session, out)
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

    async def _join(self, client: Client, session: Session, join: Join) -> None:
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


def _forget_handshake(conn: Any) -> None:
    """Drop the upgrade's headers once the connection is open (~2 KB per idle connection).

    websockets keeps the request for the connection's lifetime (``conn.request`` and a local of
    the protocol's parser generator) and the response; nothing reads their headers after the
    handshake, so they are emptied in place (``Headers.clear()``) rather than detached.
    """
    for message in (conn.request, conn.response):
        if message is not None:
            message.headers.clear()


def _peer_ip(conn: Any) -> str:
    address = getattr(conn, "remote_address", None)
    return str(address[0]) if address else "?"


def _is_closed(exc: Exception) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed)


def _response(resp: HttpResponse) -> Any:
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    headers = Headers([("Content-Type", resp.content_type),
                       ("Content-Length", str(len(resp.body))), *resp.headers])
    return Response(resp.status, http.HTTPStatus(resp.status).phrase, headers, resp.body)


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
