"""The gateway under attack, on the real Redis: tokens, expiry, the HTTP API, limits, beats,
static files. A healthy client on the same gateway keeps being served throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.auth import AuthConfig
from gateway.limits import Limits
from gateway.server import Gateway
from schemas import protocol as p
from tests.gateway.conftest import connect, make_config
from tests.gateway.test_gateway_stack import card, http_get
from tests.gateway.test_heartbeats import beat

pytestmark = pytest.mark.stack
SECRET = "sec-suite-hs256-secret-0123456789-0123456789"
AUD, ISS = "stumpcast-gateway", "stumpcast"


def rsa_keys() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


PRIVATE, PUBLIC = rsa_keys()


def token(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    import jwt

    doc = {"sub": "u", "channels": ["*"], "aud": AUD, "iss": ISS, "exp": time.time() + 60,
           **claims}
    return jwt.encode({k: v for k, v in doc.items() if v is not None}, key, algorithm=alg)


def _part(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(alg: str, hmac_key: bytes | None = None) -> str:
    """A token PyJWT refuses to make: ``alg: none`` (no signature), or HS256 with an HMAC key
    that is really the RS256 public key (the algorithm-confusion attack)."""
    import hashlib
    import hmac
    import json

    body = {"sub": "u", "channels": ["*"], "aud": AUD, "iss": ISS, "exp": time.time() + 60}
    head = f"{_part(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}." \
           f"{_part(json.dumps(body).encode())}"
    if hmac_key is None:
        return f"{head}."
    return f"{head}.{_part(hmac.new(hmac_key, head.encode(), hashlib.sha256).digest())}"


@pytest.fixture
async def secured(settings: Any, tmp_path: Any, redis: Any) -> AsyncIterator[Gateway]:
    auth = AuthConfig(hs256_secret=SECRET, rs256_public_key=PUBLIC.decode())
    gw = Gateway(make_config(settings, tmp_path, auth=auth))
    await gw.start()
    yield gw
    await gw.stop()


async def close_code(gw: Gateway, path: str) -> int | None:
    """The code the gateway closed the connection with; None if it stayed open."""
    peer = await connect(gw.port, path)
    try:
        await peer.recv(1.0)
    except ConnectionClosed:
        return peer.conn.close_code
    except TimeoutError:
        pass
    await peer.close()
    return None


async def test_forged_and_foreign_tokens_are_refused(secured: Gateway, settings: Any,
                                                     tmp_path: Any, attacks: Any) -> None:
    confused = by_hand("HS256", PUBLIC)  # the RS256 public key as an HMAC secret
    cases = {
        "token: alg none": by_hand("none"),
        "token: HS256 signed with the RS256 public key (confusion)": confused,
        "token: signed with another secret": token("x" + SECRET),
        "token: wrong audience": token(aud="another-service"),
        "token: wrong issuer": token(iss="someone-else"),
        "token: no audience": token(aud=None),
        "token: no expiry": token(exp=None),
        "token: RS256 signed by another key": token(rsa_keys()[0], "RS256"),
    }
    for name, value in cases.items():
        code = await close_code(secured, f"/ws?token={value}")
        attacks.check(name, code == p.CloseCode.UNAUTHORIZED, code)
    code = await close_code(secured, f"/ws?token={token(exp=time.time() - 60)}")
    attacks.check("token: expired", code == p.CloseCode.TOKEN_EXPIRED, code)
    assert await close_code(secured, f"/ws?token={token(PRIVATE, 'RS256')}") is None  # valid
    # With only an RS256 key configured, an HS256 token made with its public key is refused.
    rs_only = Gateway(make_config(settings, tmp_path,
                                  auth=AuthConfig(rs256_public_key=PUBLIC.decode())))
    await rs_only.start()
    try:
        code = await close_code(rs_only, f"/ws?token={confused}")
        attacks.check("token: HS256 confusion against an RS256-only gateway",
                      code == p.CloseCode.UNAUTHORIZED, code)
    finally:
        await rs_only.stop()


async def test_a_passive_listener_is_closed_when_its_token_expires(secured: Gateway,
                                                                   writer: Any, match_id: str,
                                                                   attacks: Any) -> None:
    await writer.publish(match_id, card(1))
    peer = await connect(secured.port, f"/ws?token={token(exp=time.time() + 2.0)}")
    assert (await peer.subscribe(f"match:{match_id}"))[-1]["type"] == "subscribed"
    await peer.recv()  # snapshot; from now on the client only listens
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            got.append(await peer.recv(6))
            await writer.publish(match_id, card(len(got) + 1))
    except (ConnectionClosed, TimeoutError):
        pass
    attacks.check("token: a listener keeps receiving after expiry",
                  peer.conn.close_code == p.CloseCode.TOKEN_EXPIRED, peer.conn.close_code)


async def test_the_http_api_applies_the_token_s_channels(secured: Gateway, writer: Any,
                                                         match_id: str, attacks: Any) -> None:
    await writer.publish(match_id, card(1))
    await writer.publish(f"{match_id}-other", card(2))
    path = f"/v1/matches/{match_id}/scorecard"
    attacks.check("http: scorecard without a token", (await http_get(secured.port, path))[0]
                  == 401)
    other = token(channels=[f"match:{match_id}-other"])
    status = (await http_get(secured.port, f"{path}?token={other}"))[0]
    attacks.check("http: scorecard of a match the token does not allow", status == 403, status)
    attacks.check("http: match list without a token",
                  (await http_get(secured.port, "/v1/matches"))[0] == 401)
    status, _, body = await http_get(secured.port, "/v1/matches",
                                     {"Authorization": f"Bearer {other}"})
    listed = {m["match_id"] for m in __import__("orjson").loads(body)["matches"]}
    attacks.check("http: the list shows matches the token does not allow",
                  status == 200 and match_id not in listed, listed)
    ok = token(channels=[f"match:{match_id}"])
    status, headers, _ = await http_get(secured.port, f"{path}?token={ok}")
    assert status == 200 and headers["cache-control"].startswith("private")
    attacks.check("http: /metrics on the public port",
                  (await http_get(secured.port, "/metrics"))[0] == 404)


@pytest.mark.parametrize("path", [
    "/app/../../../../etc/passwd", "/app/..%2f..%2f..%2fschemas%2fsettings.py",
    "/app/%2e%2e/%2e%2e/pyproject.toml", "/vendor/../../server.py", "/../../etc/passwd",
    "/app/js/../../../gateway/server.py", "/app//etc/passwd", "/index.html/../../auth.py",
])
async def test_static_routes_do_not_leave_their_folder(secured: Gateway, attacks: Any,
                                                       path: str) -> None:
    status, _, body = await http_get(secured.port, path)
    leaked = b"root:" in body or b"import" in body or b"[project]" in body
    # 404, or 426 where the path is no static route at all (an upgrade is expected there)
    attacks.check(f"static: gateway {path}", status in (404, 426) and not leaked,
                  (status, body[:80]))


async def test_the_media_origin_does_not_leave_its_folder(tmp_path: Any, attacks: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from media.origin import build_app
    from runtime.endpoints import Health

    origin = tmp_path / "origin"
    (origin / "720p").mkdir(parents=True)
    (origin / "720p" / "index.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "secret.m3u8").write_text("SECRET")
    (origin / "link.m3u8").symlink_to(tmp_path / "secret.m3u8")
    client = TestClient(TestServer(build_app(origin, 2, Health(lambda: b"", lambda: True))))
    await client.start_server()
    try:
        assert (await client.get("/hls/720p/index.m3u8")).status == 200
        for path in ("/hls/../secret.m3u8", "/hls/%2e%2e/secret.m3u8", "/hls/link.m3u8",
                     "/hls/720p/..%2f..%2fsecret.m3u8", "/hls//etc/passwd"):
            resp = await client.get(path)
            body = await resp.read()
            attacks.check(f"static: media origin {path}",
                          resp.status == 404 and b"SECRET" not in body, resp.status)
    finally:
        await client.close()


async def test_address_limits_and_unknown_notes(settings: Any, tmp_path: Any, redis: Any,
                                                attacks: Any) -> None:
    limits = Limits(connections_per_ip=3, accepts_per_ip=1000, accept_burst_per_ip=1000)
    gw = Gateway(make_config(settings, tmp_path, limits=limits))
    await gw.start()
    try:
        peers = [await connect(gw.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        with pytest.raises(InvalidStatus) as info:
            await connect(gw.port)
        attacks.check("limits: a 4th connection from one address",
                      info.value.response.status_code == 429)
        reply = (await peers[0].subscribe("notes:no-such-match"))[-1]
        attacks.check("notes: subscribing to a match that does not exist",
                      reply.get("code") == "unknown_match", reply)
        for peer in peers:
            await peer.close()
    finally:
        await gw.stop()
    burst = Limits(accepts_per_ip=1, accept_burst_per_ip=2)
    gw = Gateway(make_config(settings, tmp_path, limits=burst))
    await gw.start()
    try:
        peers = [await connect(gw.port), await connect(gw.port)]
        with pytest.raises(InvalidStatus) as info:
            await connect(gw.port)
        attacks.check("limits: a connection storm from one address",
                      info.value.response.status_code == 429)
        for peer in peers:
            await peer.close()
    finally:
        await gw.stop()


async def test_a_heartbeat_flood_and_spoofed_beats_are_not_forwarded(
        settings: Any, tmp_path: Any, redis: Any, writer: Any, match_id: str,
        attacks: Any) -> None:
    forwarded: list[dict[str, Any]] = []
    gw = Gateway(make_config(settings, tmp_path, limits=Limits(messages_per_second=1000,
                                                               message_burst=1000)))
    await gw.start()
    gw.beats.kafka = {"bootstrap.servers": "unused"}  # enabled; record instead of producing
    gw.beats.forward = lambda fields, now_ms=None: bool(forwarded.append(fields)) or True
    try:
        await writer.publish(match_id, card(1))
        peer = await connect(gw.port)
        session = (await peer.subscribe(f"match:{match_id}"))[-1]["session"]
        await peer.recv()
        for _ in range(200):  # a flood, claiming a victim's session
            await peer.send(p.heartbeat_message(beat(session_id="victim", match_id=match_id)))
        await peer.send(p.heartbeat_message(beat(session_id="victim", match_id="elsewhere")))
        await peer.quiet(0.5)
        attacks.check("beats: a flood of 200 beats in a second",
                      len(forwarded) == 1, len(forwarded))
        attacks.check("beats: a beat for another viewer's session",
                      all(f["session_id"] == session for f in forwarded), forwarded[:1])
        attacks.check("beats: a beat for a match the socket is not watching",
                      all(f["match_id"] == match_id for f in forwarded))
        await peer.close()
    finally:
        await gw.stop()
