"""A sans-I/O WebSocket server core: the HTTP/1.1 upgrade and RFC 6455 frames, nothing else.

Why our own: the websockets library's server costs ~11.5 KiB of RSS per idle connection, and
the gateway holds hundreds of thousands of mostly idle ones. The asyncio shell owns the sockets
and the timers; this module only turns bytes into requests and events, and values into bytes.
It does no I/O, keeps no clock and imports nothing asynchronous, so every rule here is tested
by feeding bytes.

What it deliberately does not do, because the gateway never needs it:

- no extensions (no permessage-deflate: compression state would cost more per connection than
  the whole budget), so any RSV bit is a protocol error; no subprotocols;
- no client side: server frames are never masked, client frames must be;
- no request bodies and no methods but GET: the HTTP API on this port is read-only;
- the server never fragments: a message is one frame.

Per-connection state is small on purpose: a ``FrameReader`` between messages holds no buffer
(``None``), no fragment accumulator (``None``) and nothing of the last message.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
import struct
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "Binary",
    "Close",
    "Event",
    "FrameReader",
    "HandshakeError",
    "Headers",
    "Ping",
    "Pong",
    "ProtocolViolation",
    "Request",
    "Text",
    "accept_key",
    "binary_frame",
    "close_code_allowed",
    "close_frame",
    "error_response",
    "http_response",
    "parse_request",
    "ping_frame",
    "pong_frame",
    "text_frame",
    "upgrade_response",
]

# -- errors ------------------------------------------------------------------------------------


class HandshakeError(Exception):
    """The upgrade (or the HTTP request) is refused: answer ``status`` and close.

    ``headers`` are extra response headers the RFCs ask for with that status (``Allow`` on a
    405, ``Sec-WebSocket-Version`` on a version mismatch); ``error_response`` renders it.
    """

    def __init__(self, status: int, reason: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


class ProtocolViolation(Exception):
    """The client broke RFC 6455: send a close frame with ``code`` and drop the connection.

    1002 protocol error, 1007 invalid payload data (not UTF-8), 1009 message too big.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


# -- the request -------------------------------------------------------------------------------


class _Pairs(ItemsView[str, str]):
    """``Headers.items()``: the pairs as received (a repeated header appears repeatedly), so
    ``Headers`` stays a ``Mapping`` for callers typed against one."""

    _mapping: Headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._mapping._pairs)

    def __len__(self) -> int:
        return len(self._mapping._pairs)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        name, value = item
        return isinstance(name, str) and value in self._mapping.get_all(name)


class Headers(Mapping[str, str]):
    """Request headers, read-only, looked up case-insensitively.

    A ``Mapping`` of lower-cased name to the first value (so code written against websockets'
    headers, ``headers.get("Origin")``, keeps working); ``get_all`` gives every value of a
    repeated header, and ``items()`` the pairs in the order and spelling received. ``get`` is
    ``Mapping.get``, so ``headers.get("Upgrade", "")`` is typed ``str``. Only lives for the
    handshake, so the index dict is no per-connection cost.
    """

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple(pairs)
        index: dict[str, list[str]] = {}
        for name, value in self._pairs:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> _Pairs:
        return _Pairs(self)

    def raw_items(self) -> tuple[tuple[str, str], ...]:
        """The pairs as received (the name websockets' ``Headers`` uses)."""
        return self._pairs

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request head. ``path`` is the request target as sent, query included."""

    method: str
    path: str
    headers: Headers
    version: str = "HTTP/1.1"  # or HTTP/1.0: load balancers' health checks still send it


# RFC 9110 5.6.2: token = 1*tchar. Targets: visible ASCII only (RFC 3986 characters are a
# subset; a space or a control character inside means a broken or hostile client).
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(rf"({_TCHAR}+) ([\x21-\x7e]+) (HTTP/[0-9]\.[0-9])")
# field-value: visible ASCII, obs-text (0x80-0xFF), SP and HTAB; the OWS around it is stripped
# after matching (a lazy group before [ \t]* would backtrack quadratically on a long value).
_HEADER_LINE = re.compile(rf"({_TCHAR}+):([\t\x20-\x7e\x80-\xff]*)")
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(f"{_TCHAR}+")


def _request_line(line: str) -> tuple[str, str, str]:
    """(method, target, version) of a request line, or 400. Checked as soon as the line is
    complete, so a client that speaks something else (TLS, HTTP/2 preface) is refused at once.
    HTTP/1.0 is accepted for plain requests (HAProxy's ``http-check`` sends it by default);
    ``upgrade_response`` requires HTTP/1.1."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise HandshakeError(400, "malformed request line")
    method, target, version = match.groups()
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HandshakeError(400, "HTTP/1.1 or HTTP/1.0 only")
    return method, target, version


def parse_request(buf: bytes | bytearray, max_bytes: int = 8192,
                  max_headers: int = 128) -> tuple[Request, int] | None:
    """Parse the request head at the start of ``buf``: ``(request, bytes consumed)``, or
    ``None`` while the head is incomplete.

    Bytes after the head are left alone: an eager client may already have sent frames. Strict
    on purpose (CRLF line ends only, no obsolete line folding, no control characters), because
    every request reaching this parser comes from the open internet and a lenient parser is
    where request smuggling lives.
    """
    end = buf.find(b"\r\n\r\n", 0, max_bytes)
    if end < 0:
        first = buf.find(b"\n", 0, max_bytes)
        if first >= 0:  # fail fast on a request line we would refuse anyway
            if first == 0 or buf[first - 1] != 0x0D:
                raise HandshakeError(400, "request lines end in CRLF")
            _request_line(bytes(buf[:first - 1]).decode("latin-1"))
        if len(buf) >= max_bytes:
            raise HandshakeError(431, f"request head larger than {max_bytes} bytes")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    method, target, version = _request_line(lines[0])
    if len(lines) - 1 > max_headers:
        raise HandshakeError(431, f"more than {max_headers} headers")
    pairs = []
    for line in lines[1:]:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            if line[:1] in (" ", "\t"):
                raise HandshakeError(400, "obsolete line folding")
            raise HandshakeError(400, "malformed header line")
        pairs.append((match[1], match[2].strip(" \t")))
    headers = Headers(pairs)
    if method != "GET":
        raise HandshakeError(405, "only GET", (("Allow", "GET"),))
    if "Transfer-Encoding" in headers:
        raise HandshakeError(400, "a request body is not accepted")
    for length in headers.get_all("Content-Length"):
        if not _DIGITS.fullmatch(length) or int(length) != 0:
            raise HandshakeError(400, "a request body is not accepted")
    return Request(method, target, headers, version), end + 4


# -- the upgrade -------------------------------------------------------------------------------

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2): proves to the
    client that the server read its handshake as a WebSocket one."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def _tokens(values: list[str]) -> set[str]:
    """The lower-cased tokens of a comma-separated header that may also be repeated."""
    return {token.strip().lower() for value in values for token in value.split(",")}


_UPGRADE_REQUIRED = (("Upgrade", "websocket"), ("Connection", "Upgrade"))


def upgrade_response(request: Request) -> bytes:
    """Check that ``request`` asks for a WebSocket and give the 101 answer, or raise
    ``HandshakeError``.

    No extension and no subprotocol is ever accepted (their offers are ignored, which RFC 6455
    allows), and no Server header is sent: it only tells scanners what to try.
    """
    headers = request.headers
    if request.version != "HTTP/1.1":
        raise HandshakeError(400, "a WebSocket upgrade needs HTTP/1.1")
    if "websocket" not in _tokens(headers.get_all("Upgrade")):
        raise HandshakeError(426, "Upgrade: websocket required", _UPGRADE_REQUIRED)
    if "upgrade" not in _tokens(headers.get_all("Connection")):
        raise HandshakeError(426, "Connection: Upgrade required", _UPGRADE_REQUIRED)
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key required")
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16 or len(key) != 24:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    if headers.get_all("Sec-WebSocket-Version") != ["13"]:
        raise HandshakeError(426, "Sec-WebSocket-Version 13 required",
                             (("Sec-WebSocket-Version", "13"),))
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode("ascii") + b"\r\n\r\n")


# -- plain HTTP answers ------------------------------------------------------------------------

# Answers without a body, besides 1xx. RFC 9110 8.6 forbids Content-Length on 1xx and 204; on
# a 304 it would have to be the length of the 200 it stands for, which is not known here.
_NO_BODY = frozenset({204, 304})
_FORBIDDEN_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def http_response(status: int, body: bytes, content_type: str = "application/json",
                  headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 response that ends the connection (``Connection: close``), so its
    length never has to be trusted by a client for anything but this one body.

    Raises ``ValueError`` for a header that would split the response (CR, LF, other control
    characters): header values can carry request data (an ETag echoed back), and a response
    must never be injectable. 1xx, 204 and 304 carry no body and no Content-Length.
    """
    extra = [("Content-Type", content_type)]
    if status < 200 or status in _NO_BODY:
        if body:
            raise ValueError(f"a {status} response has no body")
    else:
        extra.append(("Content-Length", str(len(body))))
    extra.append(("Connection", "close"))
    extra.extend(headers)
    lines = [f"HTTP/1.1 {status} {_phrase(status)}"]
    for name, value in extra:
        if _TOKEN.fullmatch(name) is None or _FORBIDDEN_IN_HEADER.search(value):
            raise ValueError(f"invalid response header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def error_response(exc: HandshakeError) -> bytes:
    """The answer to a refused handshake: its status, its reason as a plain-text body."""
    return http_response(exc.status, exc.reason.encode("utf-8"), "text/plain; charset=utf-8",
                         exc.headers)


# -- frames the server sends -------------------------------------------------------------------

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80
_PACK16 = struct.Struct("!BBH").pack
_PACK64 = struct.Struct("!BBQ").pack
# text_frame is called once per broadcast: a small frame's header is one table lookup.
_TEXT_HEADS = tuple(bytes((_FIN | _OP_TEXT, n)) for n in range(126))


def _frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _PACK16(first, 126, n) + payload
    return _PACK64(first, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame; ``payload`` must already be UTF-8 (the caller
    serializes with orjson, which only makes UTF-8, so it is not checked here)."""
    n = len(payload)
    if n < 126:
        return _TEXT_HEADS[n] + payload
    if n < 65536:
        return _PACK16(0x81, 126, n) + payload
    return _PACK64(0x81, 127, n) + payload


def binary_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked binary frame."""
    return _frame(_FIN | _OP_BINARY, payload)


def _control(opcode: int, payload: bytes) -> bytes:
    if len(payload) > 125:
        raise ValueError("a control frame payload is at most 125 bytes")
    return bytes((_FIN | opcode, len(payload))) + payload


def ping_frame(payload: bytes = b"") -> bytes:
    return _control(_OP_PING, payload)


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping: RFC 6455 5.5.3 wants its payload echoed."""
    return _control(_OP_PONG, payload)


def close_code_allowed(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 7.4 and the IANA registry):
    1000-1003 and 1007-1014 are defined, 3000-4999 are for libraries and applications; 1004,
    1005, 1006 and 1015 are reserved or only reported locally, and the rest is unassigned."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame. ``None`` sends no code (and so no reason). The reason is cut so the
    payload fits a control frame (125 bytes), at a character boundary so it stays UTF-8.

    Raises ``ValueError`` for a code that must not be sent (1005, 1006, ...) or a reason
    without a code: a peer would fail the connection with 1002 instead of reading ours.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b"\x88\x00"
    if not close_code_allowed(code):
        raise ValueError(f"close code {code} may not be sent")
    raw = reason.encode("utf-8")
    if len(raw) > 123:  # the input was valid UTF-8, so only the cut character is dropped
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return bytes((_FIN | _OP_CLOSE, len(raw) + 2)) + code.to_bytes(2, "big") + raw


# -- frames the client sends -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """A complete text message; ``data`` is its UTF-8, already checked (never decoded here:
    the caller's JSON parser reads bytes)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client's close frame: ``code`` is None when it sent none (read as 1005)."""

    code: int | None
    reason: str


Event = Text | Binary | Ping | Pong | Close


def _unmask(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated, as one big-integer operation: a
    64 KiB payload takes tens of microseconds instead of a Python loop's milliseconds."""
    n = len(payload)
    if n == 0:
        return b""
    key = int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def _check_utf8(data: bytes | bytearray) -> None:
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "text message is not UTF-8") from None


class _Fragments:
    """A fragmented message in progress; exists only between its first and last frame."""

    __slots__ = ("opcode", "parts", "size", "utf8")

    def __init__(self, opcode: int, first: bytes) -> None:
        self.opcode = opcode
        self.parts = [first]
        self.size = len(first)
        # Text is checked fragment by fragment, so a bad byte fails the connection at once.
        self.utf8 = codecs.getincrementaldecoder("utf-8")() if opcode == _OP_TEXT else None
        self.check(first, False)

    def check(self, part: bytes, final: bool) -> None:
        if self.utf8 is not None:
            try:
                self.utf8.decode(part, final)
            except UnicodeDecodeError:
                raise ProtocolViolation(1007, "text message is not UTF-8") from None


class FrameReader:
    """Turns the bytes a client sends after the upgrade into events (RFC 6455 section 5).

    ``feed`` takes whatever the socket delivered, any split, and returns the events it
    completed, in order. Control frames inside a fragmented message come out when they
    arrive; the message comes out whole when its last fragment does. A message is refused
    (1009) from its frame header's declared length, before any of its payload is buffered.

    After a ``Close`` event, or after ``feed`` raised ``ProtocolViolation``, the reader is
    finished: later data is ignored (``feed`` returns ``[]``), as RFC 6455 says nothing may
    follow a close frame and the shell is closing the connection anyway. Frames after the
    close frame in the same ``feed`` are dropped too.

    Idle (no partial frame, no message in progress) it holds no buffer and no accumulator.
    """

    __slots__ = ("_buf", "_done", "_frag", "_max")

    def __init__(self, max_message: int = 65536) -> None:
        self._max = max_message
        self._buf: bytearray | None = None        # an incomplete frame's bytes so far
        self._frag: _Fragments | None = None      # a fragmented message's frames so far
        self._done = False                        # after a close frame or a violation

    @property
    def idle(self) -> bool:
        """No partial frame and no partial message: nothing is held between messages."""
        return self._buf is None and self._frag is None

    @property
    def closed(self) -> bool:
        """A close frame was read or the client broke the protocol: nothing more is read."""
        return self._done

    def _fail(self, code: int, reason: str) -> ProtocolViolation:
        self._done, self._buf, self._frag = True, None, None
        return ProtocolViolation(code, reason)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """The events completed by ``data``, in order; raises ``ProtocolViolation``."""
        if self._done:
            return []
        buf: bytes | bytearray | memoryview
        if self._buf is not None:
            self._buf += data
            buf = self._buf
        else:
            # The common case: one whole small masked text frame, e.g. a subscribe.
            n = len(data)
            if (6 <= n <= 131 and data[0] == 0x81 and data[1] - 0x80 == n - 6
                    and self._frag is None and n - 6 <= self._max):
                payload = _unmask(data[6:], bytes(data[2:6]))
                try:
                    _check_utf8(payload)
                except ProtocolViolation as exc:
                    raise self._fail(exc.code, exc.reason) from None
                return [Text(payload)]
            buf = data
        try:
            events, pos = self._frames(buf)
        except ProtocolViolation as exc:
            raise self._fail(exc.code, exc.reason) from None
        if self._done or pos == len(buf):
            self._buf = None
        elif buf is not self._buf:
            self._buf = bytearray(buf[pos:])
        elif pos:
            del self._buf[:pos]
        return events

    def _frames(self, buf: bytes | bytearray | memoryview) -> tuple[list[Event], int]:
        """Read every complete frame in ``buf``: (events, bytes used). An incomplete frame's
        header is still checked, so a bad or oversized frame is refused before its payload."""
        events: list[Event] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolViolation(1002, "reserved bits set (no extension negotiated)")
            if not b1 & 0x80:
                raise ProtocolViolation(1002, "client frames must be masked")
            opcode, fin, length = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if opcode >= 8:
                if opcode > _OP_PONG:
                    raise ProtocolViolation(1002, f"unknown opcode {opcode}")
                if not fin:
                    raise ProtocolViolation(1002, "fragmented control frame")
                if length > 125:
                    raise ProtocolViolation(1002, "control frame payload over 125 bytes")
            elif opcode > _OP_BINARY:
                raise ProtocolViolation(1002, f"unknown opcode {opcode}")
            elif opcode == _OP_CONT:
                if self._frag is None:
                    raise ProtocolViolation(1002, "continuation frame without a message")
            elif self._frag is not None:
                raise ProtocolViolation(1002, "new message inside a fragmented message")
            head = 6
            if length == 126:
                if end - pos < 4:
                    break
                length, head = buf[pos + 2] << 8 | buf[pos + 3], 8
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 14
                if length >> 63:
                    raise ProtocolViolation(1002, "frame length with the high bit set")
            if opcode < 8:
                size = length + (self._frag.size if self._frag is not None else 0)
                if size > self._max:
                    raise ProtocolViolation(1009, f"message over {self._max} bytes")
            if end - pos < head + length:
                break
            start = pos + head
            pos = start + length
            payload = _unmask(buf[start:pos], bytes(buf[start - 4:start]))
            event = self._event(opcode, fin, payload)
            if event is not None:
                events.append(event)
                if self._done:
                    break
        return events, pos

    def _event(self, opcode: int, fin: int, payload: bytes) -> Event | None:
        """The event a complete, header-checked frame makes, if it completes one."""
        if opcode in (_OP_TEXT, _OP_BINARY):
            if not fin:
                self._frag = _Fragments(opcode, payload)
                return None
            if opcode == _OP_BINARY:
                return Binary(payload)
            _check_utf8(payload)
            return Text(payload)
        if opcode == _OP_CONT:
            frag = self._frag
            assert frag is not None  # checked with the header
            frag.check(payload, bool(fin))
            frag.parts.append(payload)
            frag.size += len(payload)
            if not fin:
                return None
            self._frag = None
            data = b"".join(frag.parts)
            return Text(data) if frag.opcode == _OP_TEXT else Binary(data)
        if opcode == _OP_PING:
            return Ping(payload)
        if opcode == _OP_PONG:
            return Pong(payload)
        return self._close(payload)

    def _close(self, payload: bytes) -> Close:
        self._done = True
        if not payload:
            return Close(None, "")
        if len(payload) == 1:
            raise ProtocolViolation(1002, "close frame payload of 1 byte")
        code = payload[0] << 8 | payload[1]
        if not close_code_allowed(code):
            raise ProtocolViolation(1002, f"close code {code} not allowed")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "close reason is not UTF-8") from None
        return Close(code, reason)
