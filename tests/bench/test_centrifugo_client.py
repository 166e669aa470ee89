"""The bench's load client against Centrifugo (``--peer centrifugo``): it connects and
subscribes as the client protocol says, answers the server's pings, and counts the update
records that publications carry with the same continuity and latency accounting as the
gateway's updates. Frames as Centrifugo v6 sends them (centrifugal.dev, "Client protocol");
no server."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from bench.gateway import loadclient
from bench.gateway.centrifugo_frames import Pushes, classify, lines
from bench.gateway.loadclient import Conn, Generator, ts_seconds
from gateway.hub import text_frame
from schemas.view import make_update

UPGRADE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Accept: x\r\n\r\n")


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


def masked_text(payload: bytes) -> bytes:
    """What the client writes: a masked text frame, mask key 0 (payload < 126 bytes)."""
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def peer_conn(match: str = "m") -> tuple[Generator, Conn, FakeTransport]:
    gen = Generator(0, protocol="centrifugo", path=b"/connection/websocket")
    conn = Conn(gen, match)
    t = FakeTransport()
    conn.connection_made(t)
    gen.conns.append(conn)
    return gen, conn, t


def push(record: bytes, channel: str = "m") -> bytes:
    """A publication push as Centrifugo writes it in JSON: the data embedded as JSON."""
    return b'{"push":{"channel":"' + channel.encode() + b'","pub":{"data":' + record + b"}}}"


def record(seq: int, ts: str = "2026-12-07T07:00:00.000000Z") -> bytes:
    return make_update("m", 1, seq, seq - 1, ts, {"runs": seq - 1}, {"runs": seq}).encode()


def test_the_client_connects_then_subscribes_on_the_peers_path() -> None:
    gen, conn, t = peer_conn()
    assert t.out[0].startswith(b"GET /connection/websocket HTTP/1.1\r\n")
    conn.data_received(UPGRADE)
    assert t.out[-1] == masked_text(b'{"id":1,"connect":{}}')
    assert not conn.ready
    conn.data_received(text_frame(b'{"id":1,"connect":{"client":"c1","version":"6.9.1",'
                                  b'"ping":25,"pong":true}}'))
    assert t.out[-1] == masked_text(b'{"id":2,"subscribe":{"channel":"m"}}')
    conn.data_received(text_frame(b'{"id":2,"subscribe":{}}'))
    assert conn.ready and gen.totals.peer_errors == 0


def test_a_ping_is_answered_with_an_empty_command_even_in_a_batch() -> None:
    gen, conn, t = peer_conn()
    conn.open = True
    conn.data_received(text_frame(b"{}"))
    assert t.out[-1] == masked_text(b"{}")
    # one frame, two replies (line-delimited): a ping and a publication
    conn.data_received(text_frame(b"{}\n" + push(record(1))))
    assert t.out[-1] == masked_text(b"{}")
    assert gen.totals.pings == 2 and gen.totals.updates == 1


def test_publications_are_counted_with_continuity_and_latency() -> None:
    gen, conn, _ = peer_conn()
    conn.open = True
    gen.measure = True
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 0.25)) + ".000000Z"
    sent = ts_seconds(ts)
    # the first publication sets where a client without history starts; then 5, 5 again
    # (a duplicate, ignored), 7 (6 was lost: a gap)
    for seq in (4, 5, 5, 7):
        conn.data_received(text_frame(push(record(seq, ts))))
    t = gen.totals
    assert (t.updates, t.gaps, t.covered, conn.pos) == (3, 1, 4, 7)
    assert len(t.latency) == 3
    assert all(abs(x - (now - sent) * 1000) < 1000 for x in t.latency)
    assert set(t.last) == {("m", 4), ("m", 5), ("m", 7)}


def test_one_decode_per_distinct_push_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    gen, a, _ = peer_conn()
    b = Conn(gen, "m")
    b.transport, b.open, a.open = FakeTransport(), True, True
    frame = text_frame(push(record(3)))
    decoded: list[bytes] = []
    real = Pushes.get

    def counting(self: Pushes, line: bytes) -> Any:
        if line not in self.seen:
            decoded.append(line)
        return real(self, line)

    monkeypatch.setattr(Pushes, "get", counting)
    a.data_received(frame)
    b.data_received(frame)
    assert len(decoded) == 1 and gen.totals.updates == 2 and a.pos == b.pos == 3


def test_errors_and_other_pushes_are_not_updates() -> None:
    gen, conn, _ = peer_conn()
    conn.open = True
    conn.data_received(text_frame(b'{"id":2,"error":{"code":102,"message":"unknown channel"}}'))
    conn.data_received(text_frame(b'{"push":{"channel":"m","join":{"info":{"client":"x"}}}}'))
    conn.data_received(text_frame(push(b'{"type":"note","v":1}')))
    t = gen.totals
    assert t.peer_errors == 1 and "102 unknown channel" in gen.last_error
    assert (t.updates, t.gaps, conn.ready) == (0, 0, False)
    assert gen.report({})["errors"] == 1


def test_frame_helpers() -> None:
    assert lines(b'{"a":1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert lines(b"{}") == [b"{}"]
    assert classify(b"{}") == ("ping", None)
    assert classify(b'{"id":7,"rpc":{}}') == ("other", {"id": 7, "rpc": {}})
    head = Pushes(ts_seconds).get(push(record(2)))
    assert head is not None and head[0] == {"type": "update", "v": 1, "match_id": "m",
                                            "epoch": 1, "seq": 2, "prev_seq": 1}
    assert orjson.loads(push(record(2)))["push"]["pub"]["data"]["seq"] == 2


@pytest.mark.parametrize("compete, policies", [(True, []), (False, ["batch"])])
def test_compete_leaves_the_scheduling_policy_alone(monkeypatch: pytest.MonkeyPatch,
                                                    compete: bool,
                                                    policies: list[str]) -> None:
    import os

    calls: list[str] = []
    monkeypatch.setattr(os, "sched_setscheduler",
                        lambda pid, policy, param: calls.append(
                            "batch" if policy == os.SCHED_BATCH else str(policy)))
    loadclient.scheduling(compete)
    assert calls == policies


def test_the_rig_hands_the_compete_flag_to_every_load_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import multiprocessing

    from bench.gateway.rig import Rig

    started: list[tuple[Any, ...]] = []

    class FakeProcess:
        def __init__(self, target: Any, args: tuple[Any, ...], daemon: bool) -> None:
            self.args = args

        def start(self) -> None:
            started.append(self.args)

    class FakeContext:
        Process = FakeProcess

        def Pipe(self) -> tuple[object, object]:  # noqa: N802 - multiprocessing's name
            return object(), object()

    monkeypatch.setattr(multiprocessing, "get_context", lambda _: FakeContext())
    for compete in (True, False):
        started.clear()
        rig = Rig.__new__(Rig)  # no Redis, no temporary folder: only the load processes
        rig.args = argparse.Namespace(client_procs=3, port=1, compete=compete)
        rig.settings, rig.pipes, rig.procs = None, [], []
        rig.start_clients()
        assert [a[3] for a in started] == [compete] * 3
