"""The gateway against real Redis: snapshot, deltas, resume, and every bad input answered as
documented while a healthy client on the same gateway sees no change."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.auth import AuthConfig
from gateway.limits import Limits
from gateway.server import Gateway
from schemas import patch as patch_format
from schemas.notifications import Kind, Notification, Priority
from tests.gateway.conftest import connect, make_config

pytestmark = pytest.mark.stack
SECRET = "test-secret-0123456789-0123456789-abcdef"


def card(runs: int) -> dict[str, Any]:
    return {"match_id": "m", "runs": runs, "wickets": runs // 50, "overs": f"{runs // 6}.0",
            "batters": [{"name": "Gill", "runs": runs}], "notes": "x" * 300}


@contextlib.asynccontextmanager
async def gateway_with(settings, tmp_path, **kw):
    gw = Gateway(make_config(settings, tmp_path, **kw))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def healthy(gw, writer, match_id):
    """A subscribed client that must see the next update unchanged."""
    await writer.publish(match_id, card(1))
    peer = await connect(gw.port)
    replies = await peer.subscribe(f"match:{match_id}")
    assert replies[-1]["type"] == "subscribed"
    snap = await peer.recv()
    assert snap["type"] == "snapshot"
    return peer, snap["card"]


async def still_healthy(peer, writer, match_id, before):
    update = await writer.publish(match_id, card(before["runs"] + 4))
    msg = await peer.recv()
    assert msg["seq"] == update.seq and patch_format.apply(before, msg["patch"]) == \
        card(before["runs"] + 4)
    return card(before["runs"] + 4)


async def test_snapshot_then_deltas_then_full_card_when_smaller(gateway, writer, match_id):
    peer, state = await healthy(gateway, writer, match_id)
    for runs in (2, 6, 7):
        await writer.publish(match_id, card(runs))
        msg = await peer.recv()
        assert msg["type"] == "update" and "patch" in msg
        state = patch_format.apply(state, msg["patch"])
    assert state == card(7)
    await writer.publish(match_id, {"totally": "different"})
    msg = await peer.recv()
    assert msg["card"] == {"totally": "different"}
    await peer.close()


async def test_resume_after_ten_missed_updates_is_exact(gateway, writer, match_id):
    peer, _ = await healthy(gateway, writer, match_id)
    await peer.close()
    for runs in range(2, 12):
        await writer.publish(match_id, card(runs))
    peer = await connect(gateway.port)
    replies = await peer.subscribe(f"match:{match_id}", since={"epoch": 1, "seq": 1})
    assert replies[-1]["recovered"] is True  # from history, or from the live feed after it
    missed = [await peer.recv() for _ in range(10)]
    assert [m["seq"] for m in missed] == list(range(2, 12))  # no gap, no duplicate
    state = card(1)
    for m in missed:
        state = patch_format.apply(state, m["patch"])
    assert state == card(11)
    assert await peer.quiet(0.3) == []
    await peer.close()


async def test_epoch_change_gives_a_fresh_snapshot(gateway, writer, match_id):
    peer, _ = await healthy(gateway, writer, match_id)
    await writer.rebuild(match_id, card(100))
    msg = await peer.recv(timeout=4)  # live subscribers are reset
    assert (msg["type"], msg["epoch"], msg["card"]) == ("snapshot", 2, card(100))
    late = await connect(gateway.port)
    replies = await late.subscribe(f"match:{match_id}", since={"epoch": 1, "seq": 1})
    assert replies[-1]["recovered"] is False
    assert (await late.recv())["epoch"] == 2
    await peer.close()
    await late.close()


async def test_notes_resume_and_are_wrapped_with_position(gateway, writer, match_id):
    await writer.publish(match_id, card(1))
    def n(seq: int, kind: Kind = Kind.FOUR) -> Notification:
        return Notification(f"{match_id}:{seq}", match_id, kind, Priority.P2,
                            "2023-05-29T14:00:00Z", seq, 1, "0.1", f"FOUR {seq}")
    await writer.note(n(1))
    peer = await connect(gateway.port)
    assert (await peer.subscribe(f"notes:{match_id}"))[-1]["seq"] == 1
    await writer.note(n(2))
    await writer.note(n(2, Kind.FIFTY), k=1)
    got = [await peer.recv(), await peer.recv()]
    assert [(m["seq"], m["k"], m["note"]["kind"]) for m in got] == [(2, 0, "four"),
                                                                     (2, 1, "fifty")]
    await peer.close()
    await writer.note(n(3))
    peer = await connect(gateway.port)
    replies = await peer.subscribe(f"notes:{match_id}", since={"epoch": 0, "seq": 2, "k": 0})
    assert replies[-1]["recovered"]
    assert [(m["seq"], m["k"]) for m in await peer.quiet(0.3)] == [(2, 1), (3, 0)]
    await peer.close()


class TestBadInput:
    async def test_malformed_unknown_and_oversized(self, gateway, writer, match_id):
        good, state = await healthy(gateway, writer, match_id)
        bad = await connect(gateway.port)
        await bad.send(b"{nope")
        assert (await bad.recv())["code"] == "bad_json"
        await bad.send({"type": "publish", "v": 1, "channel": f"match:{match_id}"})
        assert (await bad.recv())["code"] == "unknown_type"
        await bad.send("x" * 10_000)
        assert (await bad.recv())["code"] == "too_large"
        await bad.send("x" * 100_000)  # above the hard frame limit: closed with 1009
        with pytest.raises(ConnectionClosed):
            await bad.recv()
        assert bad.conn.close_code == 1009
        await still_healthy(good, writer, match_id, state)
        await good.close()

    async def test_ten_thousand_subscriptions(self, gateway, writer, match_id):
        good, state = await healthy(gateway, writer, match_id)
        bad = await connect(gateway.port)
        for i in range(10_000):
            await bad.send({"type": "subscribe", "v": 1, "id": i, "channel": f"match:x{i}"})
        codes: dict[str, int] = {}
        with contextlib.suppress(Exception):
            while True:
                msg = await bad.recv(2)
                codes[msg.get("code", msg["type"])] = codes.get(msg.get("code"), 0) + 1
        assert "rate_limited" in codes and bad.conn.close_code == 4029
        await still_healthy(good, writer, match_id, state)
        await good.close()

    async def test_a_client_that_never_reads_is_closed_as_slow(self, settings, tmp_path,
                                                               writer, match_id):
        limits = Limits(write_high_water=4096, queue_bytes=16384, write_timeout=2.0)
        async with gateway_with(settings, tmp_path, limits=limits,
                                socket_send_buffer=4096) as gw:
            good, state = await healthy(gw, writer, match_id)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", gw.port))
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                         b"Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            await asyncio.sleep(0.2)
            sub = orjson.dumps({"type": "subscribe", "v": 1, "channel": f"match:{match_id}"})
            sock.sendall(bytes([0x81, 0x80 | len(sub), 0, 0, 0, 0]) + sub)  # masked, key 0
            deadline, i = time.monotonic() + 15, 0
            while gw.hub.stats.slow_closes == 0 and time.monotonic() < deadline:
                i += 1  # the good client reads along; the bad one never does
                big = {**card(i), "commentary": f"{i % 10}" * 3000}
                update = await writer.publish(match_id, big)
                while True:  # tiny buffers here: the good client may get a conflated snapshot
                    msg = await good.recv()
                    state = (patch_format.apply(state, msg["patch"]) if "patch" in msg
                             else msg["card"])
                    if msg["seq"] == update.seq:
                        break
                assert state == big
                await asyncio.sleep(0.02)
            assert gw.hub.stats.slow_closes == 1 and gw.hub.stats.conflated > 0
            await still_healthy(good, writer, match_id, state)
            sock.close()
            await good.close()


class TestProtection:
    async def test_tokens(self, settings, tmp_path, writer, match_id):
        import jwt

        auth = AuthConfig(hs256_secret=SECRET)
        async with gateway_with(settings, tmp_path, auth=auth) as gw:
            ok = jwt.encode({"sub": "u", "channels": [f"match:{match_id}"],
                             "exp": time.time() + 60, "aud": "stumpcast-gateway",
                             "iss": "stumpcast"}, SECRET, algorithm="HS256")
            good, state = await healthy_token(gw, writer, match_id, ok)
            claims = {"sub": "u", "channels": ["*"], "aud": "stumpcast-gateway",
                      "iss": "stumpcast"}
            forged = jwt.encode({**claims, "exp": time.time() + 60}, "x" + SECRET,
                                algorithm="HS256")
            expired = jwt.encode({**claims, "exp": time.time() - 60}, SECRET, algorithm="HS256")
            for token, code in ((forged, 4101), (expired, 4001), (None, 4101)):
                path = "/ws" if token is None else f"/ws?token={token}"
                peer = await connect(gw.port, path)
                with pytest.raises(ConnectionClosed):
                    await peer.recv()
                assert peer.conn.close_code == code
            replies = await good.subscribe(f"notes:{match_id}", req_id=2)
            assert replies[-1]["code"] == "forbidden"
            await still_healthy(good, writer, match_id, state)
            await good.close()

    async def test_disallowed_origin_gets_403(self, settings, tmp_path, writer, match_id):
        from websockets.exceptions import InvalidStatus

        auth = AuthConfig(allowed_origins=("https://www.jiocinema.com",))
        async with gateway_with(settings, tmp_path, auth=auth) as gw:
            good, state = await healthy(gw, writer, match_id)
            with pytest.raises(InvalidStatus) as info:
                await connect(gw.port, origin="https://evil.example")
            assert info.value.response.status_code == 403
            await still_healthy(good, writer, match_id, state)
            await good.close()

    async def test_accept_rate_limit_answers_503(self, settings, tmp_path):
        from websockets.exceptions import InvalidStatus

        limits = Limits(accepts_per_second=1, accept_burst=2)
        async with gateway_with(settings, tmp_path, limits=limits) as gw:
            peers = [await connect(gw.port), await connect(gw.port)]
            with pytest.raises(InvalidStatus) as info:
                await connect(gw.port)
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Retry-After"] == "1"
            for peer in peers:
                await peer.close()


async def healthy_token(gw, writer, match_id, token):
    await writer.publish(match_id, card(1))
    peer = await connect(gw.port, f"/ws?token={token}")
    assert (await peer.subscribe(f"match:{match_id}"))[-1]["type"] == "subscribed"
    snap = await peer.recv()
    return peer, snap["card"]


class TestHttp:
    async def test_scorecard_etag_304_and_panic_mode(self, settings, tmp_path, writer,
                                                     match_id):
        async with gateway_with(settings, tmp_path) as gw:
            await writer.publish(match_id, card(3))
            status, headers, body = await http_get(gw.port, f"/v1/matches/{match_id}/scorecard")
            assert status == 200 and headers["etag"] == '"1-1"'
            assert "stale-while-revalidate" in headers["cache-control"]
            age = time.time() - parsedate_to_datetime(headers["date"]).timestamp()
            assert -2 < age < 5, headers  # the edges pass Date on: clients see a copy's age
            assert orjson.loads(body)["card"] == card(3)
            status, _, _ = await http_get(gw.port, f"/v1/matches/{match_id}/scorecard",
                                          {"If-None-Match": '"1-1"'})
            assert status == 304
            (tmp_path / "PANIC").touch()
            await writer.publish(match_id, card(9))
            status, headers, body = await http_get(gw.port, f"/v1/matches/{match_id}/scorecard")
            doc = orjson.loads(body)
            assert status == 200 and doc["stale"] is True and doc["card"] == card(3)
            assert headers["x-stumpcast-stale"] == "1"
            status, _, body = await http_get(gw.port, "/v1/matches")
            assert match_id in body.decode()
            assert (await http_get(gw.port, "/v1/matches/nope/scorecard"))[0] == 200 - 200 + 503

    async def test_health_ready_metrics(self, settings, tmp_path, writer, match_id):
        from tests.gateway.test_liveness import free_port

        admin = free_port()
        async with gateway_with(settings, tmp_path, admin_port=admin) as gateway:
            peer, _ = await healthy(gateway, writer, match_id)
            for port in (gateway.port, admin):
                assert (await http_get(port, "/healthz"))[0] == 200
                assert (await http_get(port, "/readyz"))[0] == 200
            assert (await http_get(gateway.port, "/metrics"))[0] == 404  # not on the public port
            status, _, body = await http_get(admin, "/metrics")
            text = body.decode()
            assert status == 200 and "stumpcast_gateway_connections" in text
            assert "stumpcast_gateway_delivery_latency_seconds_bucket" in text
            await peer.close()

    async def test_unknown_match_is_404(self, gateway):
        assert (await http_get(gateway.port, "/v1/matches/none-such/scorecard"))[0] == 404
        peer = await connect(gateway.port)
        assert (await peer.subscribe("match:none-such"))[-1]["code"] == "unknown_match"
        await peer.close()


async def http_get(port: int, path: str, headers: dict[str, str] | None = None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, hdrs, body


async def test_stop_is_bounded_by_a_stubborn_task_and_a_client_that_never_closes(
        settings, redis, tmp_path, monkeypatch):
    """A task that swallows its cancellation and a Redis client whose close never returns
    (seen in CI: a close waiting on a cancelled blocking read) are left behind after
    STOP_WAIT_S each, and logged; before, stop() waited for them forever."""
    import asyncio

    from gateway import server as server_module

    monkeypatch.setattr(server_module, "STOP_WAIT_S", 0.5, raising=False)
    gw = Gateway(make_config(settings, tmp_path))
    await gw.start()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a bug: cancellation swallowed

    class NeverCloses:
        async def aclose(self) -> None:
            await asyncio.Event().wait()

    real_reader = gw.feed.reader
    gw.spawn(stubborn())
    gw.feed.reader = NeverCloses()
    try:
        await asyncio.wait_for(gw.stop(), 10)
    finally:
        release.set()
        await real_reader.aclose()
