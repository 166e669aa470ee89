"""One client socket on ``asyncio.Protocol``: the upgrade, frames in, raw frames out.

The gateway's own WebSocket shell (issue #21). A connection is this object, its transport and
its ``Client``: no task, no queue, no parser generator per connection, so an idle subscriber
costs a few KiB instead of the ~11 KiB of a general-purpose WebSocket library. What bytes mean
is decided elsewhere: ``gateway.wire`` parses the request head and the frames (pure),
``Gateway`` admits the request and carries out what a message asks (``Session``). This module
only moves bytes between them and keeps the RFC 6455 state: handshake, open, closing, closed.

The connection is also the hub's ``Sink``: the hub writes frames built once for every
subscriber straight to its transport, and ``fd`` lets a native send loop write them past it
while the transport holds nothing (``gateway.sendall``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from gateway import wire
from gateway.session import Join

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.hub import Client
    from gateway.session import Session

log = logging.getLogger("stumpcast.gateway")

HANDSHAKE, HTTP, OPEN, CLOSING, CLOSED = range(5)
OPEN_TIMEOUT = 10.0  # seconds from accept to a complete request head
CLOSE_TIMEOUT = 2.0  # seconds a peer has to answer our close frame before the socket is cut
MAX_PENDING = 4      # messages held while one waits (a join reading Redis); then reading pauses
PING = wire.ping_frame()


class Host(Protocol):
    """What a connection asks of its gateway (``gateway.server.Gateway``)."""

    config: GatewayConfig
    conns: set[Connection]

    def admit(self, conn: Connection, request: wire.Request) -> Any: ...
    def opened(self, conn: Connection, admitted: Any) -> None: ...
    def closed(self, conn: Connection) -> None: ...
    def carry_out(self, client: Client, session: Session, out: Any) -> None: ...
    async def join(self, client: Client, session: Session, join: Join) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = ("gw", "transport", "fd", "ip", "state", "buf", "reader", "client", "session",
                 "pending", "paused", "ping_at", "timer", "expiry")

    def __init__(self, gw: Host) -> None:
        self.gw = gw
        self.transport: Any = None
        self.fd = -1
        self.ip = "?"
        self.state = HANDSHAKE
        self.buf = b""
        self.reader: wire.FrameReader | None = None
        self.client: Client | None = None
        self.session: Session | None = None
        self.pending: deque[bytes] | None = None  # messages behind one that waits, if any
        self.paused = False
        self.ping_at = 0.0  # loop time of the unanswered ping, 0.0 when none is out
        self.timer: asyncio.TimerHandle | None = None   # open or close timeout
        self.expiry: asyncio.TimerHandle | None = None  # the token's expiry

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else "?"
        send_buffer = self.gw.config.socket_send_buffer
        if send_buffer and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.timer = asyncio.get_running_loop().call_later(OPEN_TIMEOUT, transport.abort)
        self.gw.conns.add(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state in (OPEN, CLOSING):
            self._frames(data)
        elif state == HANDSHAKE:
            self._request(data)
        # HTTP: an answer is on its way and the socket closes after it; the rest is ignored

    def eof_received(self) -> bool | None:
        return None  # close our side too: a peer that stops sending gets no more

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        for timer in (self.timer, self.expiry):
            if timer is not None:
                timer.cancel()
        self.timer = self.expiry = None
        self.gw.conns.discard(self)
        if self.client is not None:
            self.gw.closed(self)

    # -- the hub's Sink ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # After a close frame no data frame may follow (RFC 6455 §5.5.1).
        if self.state == OPEN and not self.transport.is_closing():
            self.transport.write(data)

    def offer(self, data: bytes, high_water: int) -> bool:
        transport = self.transport
        if transport.get_write_buffer_size() >= high_water:
            return False
        if self.state == OPEN and not transport.is_closing():
            transport.write(data)
        return True

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def direct(self) -> int:
        # Never past a closing transport: its descriptor may be closed and reused already.
        transport = self.transport
        if self.state == OPEN and not transport.get_write_buffer_size() \
                and not transport.is_closing():
            return self.fd
        return -1

    def rest(self, data: bytes, sent: int) -> None:
        self.transport.write(data[sent:] if sent > 0 else data)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: our close frame, then the peer's, then the socket."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        self.transport.write(wire.close_frame(code, reason))
        self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def ping(self, now: float) -> None:
        self.transport.write(PING)
        self.ping_at = now

    def abort(self) -> None:
        self.transport.abort()

    # -- handshake -----------------------------------------------------------------------------

    def _request(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        try:
            parsed = wire.parse_request(buf)
        except wire.HandshakeError as exc:
            self._answer(wire.error_response(exc))
            return
        if parsed is None:
            self.buf = buf
            return
        request, used = parsed
        self.buf = b""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        admitted = self.gw.admit(self, request)
        if isinstance(admitted, bytes):
            self._answer(admitted)
            return
        if asyncio.iscoroutine(admitted):  # the HTTP API reads Redis
            self.state = HTTP
            self.gw.spawn(self._answer_later(admitted))
            return
        try:
            response = wire.upgrade_response(request)
        except wire.HandshakeError as exc:
            self._answer(wire.error_response(exc))
            return
        self.transport.write(response)
        self.state = OPEN
        self.reader = wire.FrameReader(self.gw.config.limits.hard_max_frame_bytes)
        self.gw.opened(self, admitted)
        rest = buf[used:]
        if rest and self.state == OPEN:
            self._frames(rest)

    def _answer(self, response: bytes) -> None:
        self.state = HTTP
        self.transport.write(response)
        self._linger()

    def _linger(self) -> None:
        """Our last bytes, then our half of the connection closed; the peer's bytes still in
        flight are read and dropped until it closes too (or ``CLOSE_TIMEOUT``). Closing at once
        would answer them with a reset, which can destroy our last bytes at the peer unread."""
        with contextlib.suppress(OSError, RuntimeError):
            self.transport.write_eof()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    async def _answer_later(self, response: Any) -> None:
        try:
            self._answer(await response)
        except Exception:  # noqa: BLE001 - one request's failure is its own
            log.exception("HTTP request failed")
            self._answer(wire.http_response(500, b'{"error":"internal"}'))

    # -- frames --------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        assert self.reader is not None
        try:
            events = self.reader.feed(data)
        except wire.ProtocolViolation as exc:
            self._fail(exc.code, exc.reason)
            return
        for event in events:
            if isinstance(event, wire.Text | wire.Binary):
                if self.state == OPEN:
                    self._message(event.data)
            elif isinstance(event, wire.Ping):
                if self.state == OPEN:
                    self.transport.write(wire.pong_frame(event.data))
            elif isinstance(event, wire.Pong):
                self.ping_at = 0.0
            else:  # wire.Close: the reader reads nothing after it
                self._peer_closed(event)
                return

    def _peer_closed(self, event: wire.Close) -> None:
        if self.state == OPEN:  # echo the code (RFC 6455 §5.5.1), then the server closes first
            self.transport.write(wire.close_frame(event.code, ""))
        self.state = CLOSED
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame saying why, then the socket."""
        if self.state == OPEN:
            self.transport.write(wire.close_frame(code, reason))
        self.state = CLOSING  # the reader is spent: what still arrives is dropped
        self._linger()

    # -- messages, in order --------------------------------------------------------------------

    def _message(self, data: bytes) -> None:
        if self.pending is not None:  # one is waiting: keep the order, bounded
            self.pending.append(data)
            if len(self.pending) >= MAX_PENDING and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        assert self.session is not None
        self._carry_out(self.session.receive(data, time.time()))

    def _carry_out(self, outs: list[Any]) -> None:
        gw, client, session = self.gw, self.client, self.session
        assert client is not None and session is not None
        for i, out in enumerate(outs):
            if isinstance(out, Join):
                self.pending = deque()
                gw.spawn(self._wait(outs[i:]))
                return
            gw.carry_out(client, session, out)

    async def _wait(self, outs: list[Any]) -> None:
        """Carry out messages one at a time while one of them waits (a join reading Redis)."""
        gw, client, session = self.gw, self.client, self.session
        assert client is not None and session is not None and self.pending is not None
        try:
            while True:
                for out in outs:
                    if client.closed:
                        return
                    if isinstance(out, Join):
                        await gw.join(client, session, out)
                    else:
                        gw.carry_out(client, session, out)
                if not self.pending or self.state != OPEN:
                    return
                outs = session.receive(self.pending.popleft(), time.time())
        except Exception:  # noqa: BLE001 - a bug must not leak to other clients
            log.exception("connection handler failed")
            self.close(1011, "internal error")
        finally:
            self.pending = None
            if self.paused and self.state == OPEN:
                self.paused = False
                self.transport.resume_reading()
