"""The sans-I/O WebSocket core (``gateway.wire``), checked byte by byte, without a server.

The websockets library's sans-I/O client is the independent peer: it builds real upgrade
requests and client frames, and parses what ``gateway.wire`` answers. Hand-built frames cover
what a well-behaved client never sends (every protocol violation), and hypothesis covers the
splits, masks and fragmentations nobody would think of.
"""

from __future__ import annotations

import base64
import os
import struct
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from gateway.wire import (
    Binary,
    Close,
    Event,
    FrameReader,
    HandshakeError,
    Headers,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Text,
    accept_key,
    binary_frame,
    close_code_allowed,
    close_frame,
    error_response,
    http_response,
    parse_request,
    ping_frame,
    pong_frame,
    text_frame,
    upgrade_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example


def upgrade_request(*extra: str, key: str = KEY, path: str = "/ws") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request(*lines: str, method: str = "GET", path: str = "/ws") -> Request:
    """A request with exactly these header lines, through the parser."""
    raw = ("\r\n".join([f"{method} {path} HTTP/1.1", *lines]) + "\r\n\r\n").encode("latin-1")
    parsed = parse_request(raw)
    assert parsed is not None
    return parsed[0]


def open_client(path: str = "/path?token=abc&x=1") -> ClientProtocol:
    """A websockets client that completed its handshake against ``gateway.wire``."""
    client = ClientProtocol(parse_uri(f"ws://localhost{path}"))
    client.send_request(client.connect())
    raw = b"".join(client.data_to_send())
    parsed = parse_request(raw)
    assert parsed is not None
    req, used = parsed
    assert used == len(raw)
    assert req.path == path
    client.receive_data(upgrade_response(req))
    assert client.state is State.OPEN, client.handshake_exc
    [response] = client.events_received()
    assert isinstance(response, Response) and response.status_code == 101
    return client


def sent(client: ClientProtocol) -> bytes:
    return b"".join(client.data_to_send())


def frames_received(client: ClientProtocol) -> list[Frame]:
    frames = client.events_received()
    assert all(isinstance(f, Frame) for f in frames)
    return [f for f in frames if isinstance(f, Frame)]


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: bytes | None = b"\x37\xfa\x21\x3d", length: int | None = None) -> bytes:
    """A client frame built by hand, so tests can break any rule. ``length`` overrides the
    declared payload length (the payload bytes are still what is given)."""
    declared = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask is not None else 0
    if declared < 126:
        head += bytes([bit | declared])
    elif declared < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", declared)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", declared)
    if mask is None:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def feed_all(reader: FrameReader, data: bytes, step: int | None = None) -> list[Event]:
    if step is None:
        return reader.feed(data)
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += reader.feed(data[i:i + step])
    return events


def violation(data: bytes, max_message: int = 65536) -> ProtocolViolation:
    reader = FrameReader(max_message)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(data)
    assert reader.feed(frame(0x1, b"after")) == []  # finished after a violation
    return info.value


# -- the handshake against a real client -------------------------------------------------------


def test_websockets_client_opens_against_our_upgrade() -> None:
    client = open_client()
    assert client.state is State.OPEN


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_response_is_minimal() -> None:
    req = request("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
                  "Sec-WebSocket-Version: 13",
                  "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                  "Sec-WebSocket-Protocol: chat, superchat")
    assert upgrade_response(req) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


def test_websockets_client_offering_deflate_still_opens() -> None:
    """websockets offers permessage-deflate by default; declining by silence is allowed."""
    client = ClientProtocol(parse_uri("ws://localhost/"))
    req = client.connect()
    req.headers["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits"
    client.send_request(req)
    parsed = parse_request(sent(client))
    assert parsed is not None
    client.receive_data(upgrade_response(parsed[0]))
    assert client.state is State.OPEN


def test_request_split_across_buffers_is_none_until_complete() -> None:
    raw = upgrade_request()
    for cut in range(len(raw)):
        assert parse_request(raw[:cut]) is None, cut
    parsed = parse_request(bytearray(raw))
    assert parsed is not None and parsed[1] == len(raw)


def test_bytes_after_the_head_are_not_consumed() -> None:
    head = upgrade_request()
    early = frame(0x1, b'{"type":"subscribe"}')
    parsed = parse_request(head + early)
    assert parsed is not None
    req, used = parsed
    assert used == len(head)
    assert FrameReader().feed((head + early)[used:]) == [Text(b'{"type":"subscribe"}')]


def test_parsed_request_fields() -> None:
    req = request("Host: example.com", "X-Spaced:   padded value \t", "Empty:",
                  "Obs-Text: caf\xe9", path="/v1/matches/7/scorecard?token=a%20b")
    assert req.method == "GET"
    assert req.path == "/v1/matches/7/scorecard?token=a%20b"
    assert req.headers.get("x-spaced") == "padded value"
    assert req.headers.get("Empty") == ""
    assert req.headers.get("obs-text") == "caf\xe9"


def test_headers_view() -> None:
    headers = Headers([("Connection", "keep-alive"), ("Host", "h"), ("connection", "Upgrade")])
    assert headers.get("CONNECTION") == "keep-alive"
    assert headers.get_all("Connection") == ["keep-alive", "Upgrade"]
    assert headers.get_all("Missing") == []
    assert headers.get("Origin") is None
    assert headers.get("Upgrade", "").lower() == ""
    assert "host" in headers and "Origin" not in headers and 1 not in headers
    assert headers["HOST"] == "h"
    with pytest.raises(KeyError):
        headers["Origin"]
    assert len(headers) == 2
    assert list(headers) == ["connection", "host"]
    assert list(headers.items()) == [("Connection", "keep-alive"), ("Host", "h"),
                                     ("connection", "Upgrade")]
    assert len(headers.items()) == 3
    assert ("CONNECTION", "Upgrade") in headers.items()
    assert ("Host", "x") not in headers.items()
    assert headers.raw_items()[2] == ("connection", "Upgrade")
    assert "keep-alive" in repr(headers)


# -- refused requests --------------------------------------------------------------------------


def refused(raw: bytes, **limits: int) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        parse_request(raw, **limits)
    return info.value


@pytest.mark.parametrize("raw", [
    b"GET /ws\r\n\r\n",
    b"GET  /ws HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/1.1 \r\n\r\n",
    b" GET /ws HTTP/1.1\r\n\r\n",
    b"GET /w s HTTP/1.1\r\n\r\n",
    b"GET /caf\xe9 HTTP/1.1\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\n\r\n",
    b"G\x00T /ws HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/2.0\r\n\r\n",
    b"GET /ws http/1.1\r\n\r\n",
    b"\r\nGET /ws HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost localhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost : localhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\n: empty-name\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHo(st: localhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: local\x00host\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: local\rhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: local\nhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: local\x7fhost\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\n  folded\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\tfolded\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /ws HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nContent-Length: -0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nContent-Length: 0, 0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
])
def test_malformed_requests_are_400(raw: bytes) -> None:
    assert refused(raw).status == 400


def test_long_header_values_parse_in_linear_time() -> None:
    """A lazy value pattern backtracked quadratically: 8 KiB of spaces took 150 ms."""
    for value in ("a" + " " * 8000 + "b", " \t" * 4000, "a" + " " * 8000):
        raw = f"GET / HTTP/1.1\r\nX: {value}\r\n\r\n".encode()
        started = time.perf_counter()
        parsed = parse_request(raw, max_bytes=len(raw))
        assert time.perf_counter() - started < 0.02
        assert parsed is not None and parsed[0].headers["x"] == value.strip(" \t")


def test_zero_content_length_is_no_body() -> None:
    parsed = parse_request(b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 00\r\n\r\n")
    assert parsed is not None


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",   # TLS to a plain port, with a CRLF
    b"PRI * HTTP/2.0\r\n",                                   # the HTTP/2 preface
    b"GET /ws HTTP/1.1\n",                                   # LF-only line ends
    b"\n",
])
def test_a_bad_request_line_is_refused_before_the_head_ends(raw: bytes) -> None:
    assert refused(raw).status == 400


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "OPTIONS", "CONNECT", "get"])
def test_other_methods_are_405_with_allow(method: str) -> None:
    exc = refused(f"{method} /ws HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert exc.status == 405
    assert exc.headers == (("Allow", "GET"),)


def test_head_larger_than_max_bytes_is_431() -> None:
    raw = upgrade_request()
    assert refused(raw[:-1], max_bytes=len(raw) - 1).status == 431   # no room for the end
    assert refused(raw + b"more", max_bytes=len(raw) - 1).status == 431
    assert parse_request(raw, max_bytes=len(raw)) is not None        # exactly fits
    assert parse_request(raw[:-1], max_bytes=len(raw)) is None        # may still fit
    endless = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000
    assert refused(endless).status == 431


def test_too_many_headers_is_431() -> None:
    lines = "".join(f"X-H{i}: v\r\n" for i in range(5))
    raw = f"GET / HTTP/1.1\r\n{lines}\r\n".encode()
    assert parse_request(raw, max_headers=5) is not None
    assert refused(raw, max_headers=4).status == 431
    many = "".join(f"X-H{i}: v\r\n" for i in range(129))
    assert refused(f"GET / HTTP/1.1\r\n{many}\r\n".encode()).status == 431


# -- refused upgrades --------------------------------------------------------------------------

UPGRADE_HEADERS = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
BASE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13"}


def upgrade_with(**changes: str | None) -> bytes:
    fields = dict(BASE)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    return upgrade_response(request(*(f"{k}: {v}" for k, v in fields.items())))


def refused_upgrade(*lines: str) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        upgrade_response(request(*lines))
    return info.value


@pytest.mark.parametrize("changes", [
    {"Upgrade": None}, {"Upgrade": "h2c"}, {"Upgrade": "websockets"}, {"Upgrade": ""},
    {"Connection": None}, {"Connection": "keep-alive"}, {"Connection": "upgraded"},
])
def test_not_an_upgrade_is_426(changes: dict[str, str | None]) -> None:
    with pytest.raises(HandshakeError) as info:
        upgrade_with(**changes)
    assert info.value.status == 426
    assert info.value.headers == UPGRADE_HEADERS


@pytest.mark.parametrize("changes", [
    {"Upgrade": "WebSocket"}, {"Upgrade": "h2c, websocket"}, {"Connection": "keep-alive, UPGRADE"},
    {"Connection": "upgrade,keep-alive"},
])
def test_upgrade_tokens_are_case_insensitive_lists(changes: dict[str, str]) -> None:
    assert upgrade_with(**changes).startswith(b"HTTP/1.1 101 ")


def test_upgrade_tokens_may_come_in_repeated_headers() -> None:
    req = request("Upgrade: h2c", "Upgrade: websocket", "Connection: keep-alive",
                  "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13")
    assert upgrade_response(req).startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize("key", [
    None, "", "not base64!!", base64.b64encode(os.urandom(15)).decode(),
    base64.b64encode(os.urandom(17)).decode(), "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=",
    " dGhlIHNhbXBsZSBub25jZQ==x",
])
def test_a_bad_key_is_400(key: str | None) -> None:
    with pytest.raises(HandshakeError) as info:
        upgrade_with(Sec_WebSocket_Key=key)
    assert info.value.status == 400


def test_two_keys_are_400() -> None:
    exc = refused_upgrade("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
                          f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13")
    assert exc.status == 400


@pytest.mark.parametrize("version", [None, "8", "12", "13, 8", "", "14"])
def test_another_version_is_426_naming_13(version: str | None) -> None:
    with pytest.raises(HandshakeError) as info:
        upgrade_with(Sec_WebSocket_Version=version)
    assert info.value.status == 426
    assert info.value.headers == (("Sec-WebSocket-Version", "13"),)


# -- plain HTTP answers ------------------------------------------------------------------------


def client_reads(response: bytes) -> Response:
    """What websockets' client makes of a non-101 answer: an independent HTTP parser."""
    client = ClientProtocol(parse_uri("ws://localhost/"))
    client.send_request(client.connect())
    client.receive_data(response)
    client.receive_eof()
    [answer] = client.events_received()
    assert isinstance(answer, Response)
    return answer


def test_http_response_layout() -> None:
    raw = http_response(200, b'{"ok":true}', headers=[("ETag", '"42"'),
                                                      ("Cache-Control", "max-age=1")])
    assert raw == (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n'
                   b'Connection: close\r\nETag: "42"\r\nCache-Control: max-age=1\r\n\r\n'
                   b'{"ok":true}')
    answer = client_reads(raw)
    assert answer.status_code == 200
    assert answer.headers["ETag"] == '"42"'
    assert answer.body == b'{"ok":true}'


def test_http_response_without_body() -> None:
    raw = http_response(304, b"", headers=[("ETag", '"42"')])
    assert raw.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"Content-Length" not in raw and raw.endswith(b'ETag: "42"\r\n\r\n')
    with pytest.raises(ValueError):
        http_response(204, b"x")


def test_http_response_unknown_status_still_renders() -> None:
    assert http_response(599, b"").startswith(b"HTTP/1.1 599 Unknown\r\n")


@pytest.mark.parametrize("header", [
    ("X-Evil", "a\r\nSet-Cookie: x=1"), ("X-Evil", "a\nb"), ("X-Evil", "a\x00"),
    ("X Evil", "a"), ("X-Evil:", "a"), ("", "a"), ("X-Evil", "\u2603"),
])
def test_http_response_refuses_injected_headers(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        http_response(200, b"", headers=[header])


def test_error_response_from_handshake_errors() -> None:
    exc = refused(b"POST /ws HTTP/1.1\r\n\r\n")
    raw = error_response(exc)
    assert raw.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    answer = client_reads(raw)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET"
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.headers["Connection"] == "close"
    assert answer.body == exc.reason.encode()
    version = HandshakeError(426, "Sec-WebSocket-Version 13 required",
                             (("Sec-WebSocket-Version", "13"),))
    assert client_reads(error_response(version)).headers["Sec-WebSocket-Version"] == "13"


def test_errors_carry_their_fields() -> None:
    exc = HandshakeError(431, "too big")
    assert (exc.status, exc.reason, exc.headers) == (431, "too big", ())
    pv = ProtocolViolation(1009, "big")
    assert (pv.code, pv.reason) == (1009, "big")
    assert "1009" in str(pv) and "431" in str(exc)


# -- server frames, read by a real client ------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 100_000])
def test_text_frames_of_every_length_encoding(size: int) -> None:
    client = open_client()
    payload = ("é" * (size // 2) + "a" * (size % 2)).encode()
    assert len(payload) == size
    client.receive_data(text_frame(payload))
    assert frames_received(client) == [Frame(Opcode.TEXT, payload)]


def test_text_frame_headers() -> None:
    assert text_frame(b"") == b"\x81\x00"
    assert text_frame(b"a" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"a" * 65536)[:10] == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"


def test_control_and_binary_frames_reach_the_client() -> None:
    client = open_client()
    client.receive_data(ping_frame() + ping_frame(b"hi") + pong_frame(b"yo")
                        + binary_frame(b"\x00" * 300) + close_frame(4008, "slow consumer"))
    assert [(f.opcode, f.data) for f in frames_received(client)] == [
        (Opcode.PING, b""), (Opcode.PING, b"hi"), (Opcode.PONG, b"yo"),
        (Opcode.BINARY, b"\x00" * 300), (Opcode.CLOSE, b"\x0f\xa8slow consumer")]
    assert client.close_rcvd is not None
    assert (client.close_rcvd.code, client.close_rcvd.reason) == (4008, "slow consumer")


def test_close_frame_without_code() -> None:
    assert close_frame(None) == b"\x88\x00"
    client = open_client()
    client.receive_data(close_frame(None))
    assert client.close_rcvd is not None and client.close_rcvd.code == 1005
    with pytest.raises(ValueError):
        close_frame(None, "why")


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_close_frame_refuses_codes_not_for_the_wire(code: int) -> None:
    with pytest.raises(ValueError):
        close_frame(code)


def test_control_frames_refuse_long_payloads() -> None:
    assert len(ping_frame(b"x" * 125)) == 127
    with pytest.raises(ValueError):
        ping_frame(b"x" * 126)
    with pytest.raises(ValueError):
        pong_frame(b"x" * 126)


@given(st.text(max_size=200), st.sampled_from([1000, 1001, 1008, 1011, 4000, 4999]))
def test_close_reason_is_cut_at_a_character_boundary(reason: str, code: int) -> None:
    raw = close_frame(code, reason)
    assert raw[0] == 0x88 and raw[1] == len(raw) - 2 <= 125
    assert int.from_bytes(raw[2:4], "big") == code
    kept = raw[4:].decode("utf-8")  # never a split character
    assert reason.startswith(kept)
    if len(reason.encode()) <= 123:
        assert kept == reason
    else:
        assert len(raw[4:]) > 123 - 4  # at most one 4-byte character dropped


def test_close_reason_cut_drops_the_split_character() -> None:
    raw = close_frame(1000, "a" + "€" * 50)   # 1 + 150 bytes: the cut falls inside a "€"
    assert raw[4:] == ("a" + "€" * 40).encode() and raw[1] == 2 + 121
    client = open_client()
    client.receive_data(raw)
    assert client.close_rcvd is not None and client.close_rcvd.reason == "a" + "€" * 40


# -- client frames, from a real client ---------------------------------------------------------


def client_stream() -> tuple[bytes, list[Event]]:
    client = open_client()
    client.send_text("héllo, wörld ✓ 🏏".encode())
    client.send_binary(b"\x00\xff" * 100)
    client.send_text(b"x" * 70_000)
    client.send_ping(b"are you there")
    client.send_pong(b"unsolicited")
    client.send_text("frag€".encode()[:5], fin=False)     # splits the € across fragments
    client.send_ping(b"in between")
    client.send_continuation("frag€".encode()[5:], fin=False)
    client.send_continuation(b"!", fin=True)
    client.send_binary(b"b1", fin=False)
    client.send_continuation(b"b2", fin=True)
    client.send_text(b"")
    client.send_close(1000, "done ✓")
    expected: list[Event] = [
        Text("héllo, wörld ✓ 🏏".encode()), Binary(b"\x00\xff" * 100), Text(b"x" * 70_000),
        Ping(b"are you there"), Pong(b"unsolicited"), Ping(b"in between"),
        Text("frag€!".encode()), Binary(b"b1b2"), Text(b""), Close(1000, "done ✓")]
    return sent(client), expected


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7, 125, 4096])
def test_client_messages_any_split(step: int | None) -> None:
    data, expected = client_stream()
    reader = FrameReader(max_message=100_000)
    assert feed_all(reader, data, step) == expected
    assert reader.closed and reader.idle


def test_events_are_typed_values() -> None:
    [event] = FrameReader().feed(frame(0x1, b'{"a":1}'))
    assert isinstance(event, Text) and type(event.data) is bytes
    match event:
        case Text(data):
            assert data == b'{"a":1}'
    assert Close(None, "") != Close(1000, "")
    assert not hasattr(event, "__dict__")


def test_data_after_close_is_ignored() -> None:
    reader = FrameReader()
    assert reader.feed(frame(0x8, b"\x03\xe8") + frame(0x1, b"late")) == [Close(1000, "")]
    assert reader.feed(frame(0x1, b"later")) == []
    assert reader.feed(b"\x00\x00garbage") == []


def test_close_without_payload_has_no_code() -> None:
    assert FrameReader().feed(frame(0x8)) == [Close(None, "")]


def test_empty_feed() -> None:
    reader = FrameReader()
    assert reader.feed(b"") == []
    assert reader.feed(frame(0x1, b"hi")[:1]) == []
    assert reader.feed(b"") == []
    assert not reader.idle


def test_memoryview_and_bytearray_input() -> None:
    data = frame(0x1, b"one") + frame(0x2, b"two")
    assert FrameReader().feed(memoryview(data)) == [Text(b"one"), Binary(b"two")]
    assert FrameReader().feed(bytearray(data)) == [Text(b"one"), Binary(b"two")]
    assert FrameReader().feed(memoryview(frame(0x1, b"fast"))) == [Text(b"fast")]


# -- protocol violations -----------------------------------------------------------------------


def test_unmasked_frame_is_1002() -> None:
    assert violation(frame(0x1, b"hello", mask=None)).code == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_are_1002(rsv: int) -> None:
    assert violation(frame(0x1, b"x", rsv=rsv)).code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_unknown_opcodes_are_1002(opcode: int) -> None:
    assert violation(frame(opcode, b"x")).code == 1002


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_long_control_frames_are_1002(opcode: int) -> None:
    assert violation(frame(opcode, b"\x03\xe8" + b"x" * 124)).code == 1002
    # refused from the header alone, before the payload arrives
    assert violation(frame(opcode, b"", length=126)).code == 1002


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frames_are_1002(opcode: int) -> None:
    assert violation(frame(opcode, b"", fin=False)).code == 1002


def test_continuation_without_a_message_is_1002() -> None:
    assert violation(frame(0x0, b"x")).code == 1002
    assert violation(frame(0x1, b"a") + frame(0x0, b"b")).code == 1002


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_new_message_inside_a_fragmented_one_is_1002(opcode: int) -> None:
    data = frame(0x1, b"a", fin=False) + frame(0x9, b"ok") + frame(opcode, b"b")
    assert violation(data).code == 1002


def test_oversized_message_is_1009_from_the_header() -> None:
    assert violation(frame(0x1, b"x" * 11), max_message=10).code == 1009
    assert violation(frame(0x2, b"x" * 11), max_message=10).code == 1009
    # a huge declared length is refused with only the header in hand: nothing is allocated
    reader = FrameReader()
    head = frame(0x2, b"", length=2**62)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(head)
    assert info.value.code == 1009
    assert violation(frame(0x1, b"", length=70_000)).code == 1009


def test_message_of_exactly_max_message_is_accepted() -> None:
    assert FrameReader(10).feed(frame(0x1, b"x" * 10)) == [Text(b"x" * 10)]
    assert FrameReader(200).feed(frame(0x2, b"x" * 200)) == [Binary(b"x" * 200)]


def test_oversized_fragmented_message_is_1009() -> None:
    reader = FrameReader(10)
    assert reader.feed(frame(0x1, b"x" * 6, fin=False)) == []
    assert reader.feed(frame(0x9, b"control frames do not count")) == [
        Ping(b"control frames do not count")]
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(frame(0x0, b"", length=5)[:8])  # its header only
    assert info.value.code == 1009
    ok = FrameReader(10)
    data = frame(0x1, b"x" * 6, fin=False) + frame(0x0, b"y" * 4)
    assert ok.feed(data) == [Text(b"x" * 6 + b"y" * 4)]


@pytest.mark.parametrize("payload", [b"\xff", b"\xc3", b"caf\xc3\xa9\xed\xa0\x80",
                                     b"\xf4\x90\x80\x80", b"\xc0\xaf", b"ok\x80"])
def test_text_that_is_not_utf8_is_1007(payload: bytes) -> None:
    assert violation(frame(0x1, payload)).code == 1007                       # fast path
    assert violation(frame(0x1, payload + b"x" * 200)).code == 1007          # general path
    assert violation(frame(0x1, payload, fin=False) + frame(0x0, b"", fin=True)).code == 1007


def test_bad_utf8_in_a_fragment_fails_before_the_message_ends() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(frame(0x1, b"ok", fin=False) + frame(0x0, b"\xff", fin=False))
    assert info.value.code == 1007


def test_utf8_split_across_fragments_is_fine_but_must_end_whole() -> None:
    euro = "€".encode()
    data = frame(0x1, euro[:1], fin=False) + frame(0x0, euro[1:2], fin=False)
    assert FrameReader().feed(data + frame(0x0, euro[2:])) == [Text(euro)]
    assert violation(data + frame(0x0, b"")).code == 1007


def test_binary_is_not_checked_as_utf8() -> None:
    assert FrameReader().feed(frame(0x2, b"\xff\xfe")) == [Binary(b"\xff\xfe")]


def test_close_payload_of_one_byte_is_1002() -> None:
    assert violation(frame(0x8, b"\x03")).code == 1002


BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
GOOD_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000,
              4999]


@pytest.mark.parametrize("code", BAD_CODES)
def test_close_codes_not_for_the_wire_are_1002(code: int) -> None:
    assert not close_code_allowed(code)
    assert violation(frame(0x8, code.to_bytes(2, "big") + b"why")).code == 1002


@pytest.mark.parametrize("code", GOOD_CODES)
def test_close_codes_allowed_on_the_wire(code: int) -> None:
    assert close_code_allowed(code)
    assert FrameReader().feed(frame(0x8, code.to_bytes(2, "big"))) == [Close(code, "")]
    close_frame(code)


def test_close_reason_not_utf8_is_1007() -> None:
    assert violation(frame(0x8, b"\x03\xe8bad\xff")).code == 1007


def test_64_bit_length_with_the_high_bit_is_1002() -> None:
    data = b"\x82\xff" + (2**63 + 5).to_bytes(8, "big") + b"mask"
    assert violation(data, max_message=2**64).code == 1002


def test_events_before_a_violation_in_the_same_feed_are_dropped() -> None:
    """Documented: the connection is failed, so what came before in the buffer is moot."""
    reader = FrameReader()
    with pytest.raises(ProtocolViolation):
        reader.feed(frame(0x1, b"fine") + frame(0x1, b"bad", mask=None))
    assert reader.closed


# -- what an idle reader holds -----------------------------------------------------------------


def test_idle_reader_holds_no_buffers() -> None:
    reader = FrameReader(100_000)
    assert reader.idle
    assert sys.getsizeof(reader) <= 120
    assert not hasattr(reader, "__dict__")
    data, expected = client_stream()
    data = data[:-16]  # all but the close frame: 2 + 4 (mask) + 2 + len("done ✓")
    assert feed_all(reader, data, 5) == expected[:-1]
    assert reader.idle
    assert reader._buf is None and reader._frag is None
    assert sys.getsizeof(reader) <= 120


def test_partial_state_is_released_when_the_message_completes() -> None:
    reader = FrameReader()
    data = frame(0x1, b"a" * 300, fin=False) + frame(0x0, b"b" * 300)
    reader.feed(data[:100])
    assert reader._buf is not None
    reader.feed(data[100:320])
    assert reader._frag is not None
    assert reader.feed(data[320:]) == [Text(b"a" * 300 + b"b" * 300)]
    assert reader._buf is None and reader._frag is None


def test_a_large_frame_in_tiny_pieces_is_appended_in_place() -> None:
    """One buffer grows for a dribbled frame (amortized appends), never a copy per feed:
    64 KiB one byte at a time must not cost 2 GB of copying."""
    data = frame(0x2, os.urandom(65_000))
    reader = FrameReader()
    assert reader.feed(data[:3]) == []
    buffer = reader._buf
    for i in range(3, len(data) - 1):
        assert reader.feed(data[i:i + 1]) == []
    assert reader._buf is buffer
    [event] = reader.feed(data[-1:])
    assert isinstance(event, Binary) and len(event.data) == 65_000
    assert reader.idle


# -- properties --------------------------------------------------------------------------------

messages: st.SearchStrategy[list[Event]] = st.lists(
    st.one_of(st.text(max_size=300).map(lambda s: Text(s.encode())),
              st.binary(max_size=300).map(Binary),
              st.binary(max_size=125).map(Ping),
              st.binary(max_size=125).map(Pong)),
    max_size=8)


@st.composite
def wire_stream(draw: st.DrawFn) -> tuple[list[Event], bytes]:
    """Messages encoded with random masks and random fragmentation, pings interleaved between
    fragments, then a close frame: (the events expected, the bytes)."""
    expected: list[Event] = []
    out: list[bytes] = []
    for event in draw(messages):
        if isinstance(event, Ping | Pong):
            out.append(frame(0x9 if isinstance(event, Ping) else 0xA, event.data,
                             mask=draw(st.binary(min_size=4, max_size=4))))
            expected.append(event)
            continue
        assert isinstance(event, Text | Binary)
        data = event.data
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for i, piece in enumerate(pieces):
            if i and draw(st.booleans()):  # a control frame inside the fragmented message
                ping = draw(st.binary(max_size=125))
                out.append(frame(0x9, ping, mask=draw(st.binary(min_size=4, max_size=4))))
                expected.append(Ping(ping))
            opcode = (0x1 if isinstance(event, Text) else 0x2) if i == 0 else 0x0
            out.append(frame(opcode, piece, fin=i == len(pieces) - 1,
                             mask=draw(st.binary(min_size=4, max_size=4))))
        expected.append(event)
    out.append(frame(0x8, b"\x03\xe9going", mask=b"\x00\x00\x00\x00"))
    expected.append(Close(1001, "going"))
    return expected, b"".join(out)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_streams_come_out_whole(data: st.DataObject) -> None:
    events, raw = data.draw(wire_stream())
    reader = FrameReader(max_message=1024)
    got: list[Event] = []
    for chunk in data.draw(splits(raw)):
        got += reader.feed(chunk)
    assert got == events
    assert reader.idle


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=200), max_size=6), st.integers(1, 64), st.data())
def test_websockets_client_fragments_reassemble(parts: list[bytes], step: int,
                                                data: st.DataObject) -> None:
    client = open_client()
    text = data.draw(st.booleans())
    whole = b"".join(parts)
    if text:
        whole = whole.decode("latin-1").encode("utf-8")
        cut = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=4)))
        parts = [whole[a:b] for a, b in zip([0, *cut], [*cut, len(whole)], strict=True)]
    if not parts:
        parts = [b""]
    send = client.send_text if text else client.send_binary
    send(parts[0], fin=len(parts) == 1)
    for i, part in enumerate(parts[1:], 1):
        client.send_continuation(part, fin=i == len(parts) - 1)
    client.send_ping(b"p")
    expected: list[Event] = [Text(whole) if text else Binary(whole), Ping(b"p")]
    assert feed_all(FrameReader(), sent(client), step) == expected


@settings(max_examples=100)
@given(st.binary(max_size=70_000))
def test_server_frames_parse_in_websockets(payload: bytes) -> None:
    client = open_client()
    text = payload.decode("latin-1").encode()
    client.receive_data(binary_frame(payload) + text_frame(text))
    assert [f.data for f in frames_received(client)] == [payload, text]


@settings(max_examples=1000)
@given(st.binary(max_size=300), st.integers(1, 300))
def test_random_bytes_only_ever_raise_protocol_violation(raw: bytes, step: int) -> None:
    reader = FrameReader(max_message=200)
    try:
        feed_all(reader, raw, step)
    except ProtocolViolation as exc:
        assert exc.code in (1002, 1007, 1009)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_streams_only_ever_raise_protocol_violation(data: st.DataObject) -> None:
    """Random bytes rarely look like a masked frame; flipping bytes of a valid stream reaches
    the deeper states (fragments, close payloads, UTF-8)."""
    _, raw = data.draw(wire_stream())
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    reader = FrameReader(max_message=512)
    try:
        for chunk in data.draw(splits(bytes(mutated))):
            for event in reader.feed(chunk):
                assert isinstance(event, Text | Binary | Ping | Pong | Close)
                if isinstance(event, Text):
                    event.data.decode("utf-8")
    except ProtocolViolation as exc:
        assert exc.code in (1002, 1007, 1009)


@settings(max_examples=1000)
@given(st.binary(max_size=400))
def test_random_requests_only_ever_raise_handshake_error(raw: bytes) -> None:
    try:
        result = parse_request(raw, max_bytes=256, max_headers=8)
    except HandshakeError as exc:
        assert exc.status in (400, 405, 431)
        return
    if result is not None:
        req, used = result
        assert raw[used - 4:used] == b"\r\n\r\n" and req.method == "GET"
        try:
            upgrade_response(req)
        except HandshakeError as exc:
            assert exc.status in (400, 426)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True),
                          st.from_regex(r"[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?",
                                        fullmatch=True)),
                max_size=10))
def test_header_pairs_round_trip(pairs: list[tuple[str, str]]) -> None:
    pairs = [(n, v) for n, v in pairs
             if n.lower() not in ("content-length", "transfer-encoding")]
    head = "GET / HTTP/1.1\r\n" + "".join(f"{n}:  {v}\t\r\n" for n, v in pairs) + "\r\n"
    parsed = parse_request(head.encode())
    assert parsed is not None
    assert list(parsed[0].headers.items()) == pairs


def test_http_1_0_is_answered_but_never_upgraded():
    """HAProxy's ``http-check`` asks /readyz in HTTP/1.0 unless told otherwise."""
    parsed = parse_request(b"GET /readyz HTTP/1.0\r\n\r\n")
    assert parsed is not None and parsed[0].version == "HTTP/1.0"
    head = (b"GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(b"k" * 16) + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
    parsed = parse_request(head)
    assert parsed is not None
    with pytest.raises(HandshakeError) as info:
        upgrade_response(parsed[0])
    assert info.value.status == 400
