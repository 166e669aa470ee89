"""The benchmark's load client parses what the gateway sends and answers pings (a client that
never pongs is dropped by the keepalive, which once wrecked a 20k run)."""

from __future__ import annotations

from typing import Any

import orjson

from bench.gateway.loadclient import Conn, Generator, head
from gateway.hub import text_frame
from schemas import protocol as p
from schemas.view import make_update


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


def open_conn() -> tuple[Generator, Conn, FakeTransport]:
    gen = Generator(0)
    conn = Conn(gen, "m")
    t = FakeTransport()
    conn.transport: Any = t
    conn.open = True
    return gen, conn, t


def test_ping_is_answered_with_a_masked_pong_of_the_same_payload() -> None:
    _, conn, t = open_conn()
    conn.data_received(b"\x89\x04abcd")
    assert t.out == [b"\x8a\x84\x00\x00\x00\x00abcd"]


def test_updates_are_counted_from_the_head_only_and_gaps_detected() -> None:
    gen, conn, _ = open_conn()
    ts = "2026-11-23T12:00:00.000000Z"
    snap = p.snapshot("m", 1, 3, ts, b'{"runs": 1}')
    u4 = make_update("m", 1, 4, 3, ts, {"runs": 1}, {"runs": 5}).encode()
    u6 = make_update("m", 1, 6, 5, ts, {"runs": 5}, {"runs": 9}).encode()
    # Split across reads, to exercise the frame parser's buffering.
    data = text_frame(snap) + text_frame(u4) + b"\x89\x00" + text_frame(u6)
    conn.data_received(data[:7])
    conn.data_received(data[7:])
    t = gen.totals
    assert (t.snapshots, t.updates, t.gaps, conn.pos) == (1, 2, 1, 6)
    assert head(u4) == ({"type": "update", "v": 1, "match_id": "m", "epoch": 1, "seq": 4,
                         "prev_seq": 3}, ts)


def test_a_lost_connection_is_reopened_once_when_reconnecting() -> None:
    """``stumpcast chaos``: a client whose gateway dies reopens through the load balancer (and
    resumes by position); a refused handshake, already retried, is not reopened twice."""
    gen, conn, _ = open_conn()
    retried: list[Conn] = []
    gen.retry = lambda c: (retried.append(c), setattr(c, "retrying", True))  # type: ignore
    conn.connection_lost(None)
    assert retried == [] and gen.totals.drops == 0          # off by default (other benches)
    gen.reconnect = True
    conn.connection_lost(None)
    conn.connection_lost(None)                               # a reopen already pending
    assert retried == [conn] and gen.totals.drops == 1


def test_a_resubscription_sends_the_position_and_receipts_are_tracked() -> None:
    gen, conn, t = open_conn()
    gen.conns.append(conn)
    gen.track = True
    ts = "2026-11-23T12:00:00.000000Z"
    conn.data_received(text_frame(p.snapshot("m", 2, 3, ts, b'{"runs": 1}')))
    conn.data_received(text_frame(make_update("m", 2, 4, 3, ts, {"runs": 1},
                                              {"runs": 5}).encode()))
    conn.subscribe(resume=True)
    assert b'"since":{"epoch":2,"seq":4}' in t.out[-1]
    counts = gen.counts()
    assert set(counts["rx_first"]) == {("m", 4)} and counts["positions"] == [("m", 4, True)]
    assert gen.counts()["rx_first"] == {}                   # handed over once


async def test_a_client_that_cannot_connect_keeps_trying_when_reconnecting(
        monkeypatch: Any) -> None:
    """Forty refused attempts: a bench client gives up, a chaos client tries again later."""
    import asyncio

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    for reconnect, retried in ((False, 0), (True, 1)):
        gen = Generator(1)   # port 1: refused
        gen.reconnect = reconnect
        later: list[Conn] = []
        gen.retry = later.append  # type: ignore[method-assign]
        await gen._open(asyncio.get_running_loop(), Conn(gen, "m"))
        assert gen.totals.retries == 40 and len(later) == retried


def test_every_client_keeps_the_card_and_a_broken_chain_is_seen() -> None:
    """``stumpcast chaos`` compares the card at every load client with the fold: each client
    applies what it received to its own card (steps shared between clients that hold the same
    card and get the same bytes). Thirty balls of a real match (Cricsheet, cricsheet.org,
    ODC-BY): a client that got every update, one that resumed after a drop with a fresh
    snapshot and got a duplicate, and one that missed an update."""
    from bench import chaos_core as core
    from streams.pipeline import ScorecardFolder, replay_state
    from tests.streams.cricsheet_data import events, match_files

    evs = events(match_files()[0].stem)[:30]
    cards = [replay_state(evs[0].match_id, evs[:n], ScorecardFolder()).doc
             for n in range(len(evs) + 1)]
    assert cards[-1] != cards[-2] and cards[-1] is not None
    ts = "2026-11-23T12:00:00.000000Z"
    ups = [make_update("m", 1, n, n - 1, ts, cards[n - 1], cards[n]).encode()
           for n in range(2, len(cards))]
    snap = {n: p.snapshot("m", 1, n, ts, orjson.dumps(cards[n])) for n in (1, 15)}
    gen = Generator(0)
    gen.track = True
    every, resumed, missed = (Conn(gen, "m") for _ in range(3))
    gen.conns = [every, resumed, missed]
    for conn in gen.conns:
        conn.transport, conn.open = FakeTransport(), True
        conn.data_received(text_frame(snap[1]))
    for n, raw in enumerate(ups, start=2):
        every.data_received(text_frame(raw))
        if n != 9:
            missed.data_received(text_frame(raw))
        if n < 10 or n > 15:
            resumed.data_received(text_frame(raw))
        if n == 15:   # dropped at 9, back with a snapshot at 15, then 15 again
            resumed.data_received(text_frame(snap[15]) + text_frame(raw))
    assert [c.pos for c in gen.conns] == [len(evs)] * 3
    held = gen.counts()["cards"]
    final = cards[-1]
    assert sum(n for _, card, n in held if card == final) == 2
    assert [(n, card) for _, card, n in held if card != final] == [(1, None)]
    assert core.client_card_problems({"m": final}, held) == [
        "load clients: 1 of 3 clients of m hold a card that is not the fold of its events "
        "(no card)"]
    assert len(gen.cards.cards) < 2 * len(cards)        # each step computed once, shared
