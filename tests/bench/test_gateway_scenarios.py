"""`stumpcast bench gateway --scenarios`: CPU per delivery from /proc samples, publishers that
keep their schedule, the peer fed the same update records (a fake of ``peer.Centrifugo``'s
shape), the ratio rows, and bad arguments answered clearly. No servers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.gateway.scenarios import (
    Figures,
    PeerServer,
    cpu_per_delivery_us,
    cpu_sample,
    make_peer,
    publisher,
    ratio_rows,
    stat_ticks,
)
from stumpcast.cli import main

# /proc/<pid>/stat lines (proc(5)): utime and stime are fields 14 and 15, in clock ticks. The
# command name is in parentheses and may itself hold spaces and parentheses.
STAT = ("4242 (centrifugo) S 1 4242 4242 0 -1 4194560 9000 0 0 0 {u} {s} 0 0 20 0 9 0 "
        "123456 1200000000 12000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
ODD = ("77 (python -m x) (y)) R 1 77 77 0 -1 4194560 100 0 0 0 {u} {s} 0 0 20 0 1 0 "
       "1 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0")


def test_cpu_per_delivery_from_two_samples() -> None:
    assert stat_ticks(STAT.format(u=700, s=300)) == 1000
    assert stat_ticks(ODD.format(u=5, s=6)) == 11
    samples = [{4242: STAT.format(u=700, s=300), 77: ODD.format(u=5, s=6)},
               {4242: STAT.format(u=820, s=340), 77: ODD.format(u=15, s=6)}]
    before, after = (cpu_sample([4242, 77], s.__getitem__) for s in samples)
    # (120 + 40 + 10) ticks at 100 Hz = 1.7 s over 100,000 deliveries = 17 µs each
    assert cpu_per_delivery_us(before, after, 100_000, hz=100) == pytest.approx(17.0)
    with pytest.raises(ValueError, match="not sampled"):
        cpu_per_delivery_us(before, {4242: 1100}, 100_000, hz=100)
    with pytest.raises(ValueError, match="no deliveries"):
        cpu_per_delivery_us(before, after, 0, hz=100)


def test_cpu_sample_reads_this_process() -> None:
    import os

    first = cpu_sample([os.getpid()])[os.getpid()]
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert cpu_sample([os.getpid()])[os.getpid()] > first


class FakeCentrifugo:
    """``bench/gateway/peer.py``'s ``Centrifugo``, as far as the scenarios use it."""

    ws_path = "/connection/websocket"
    pid = 4242

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.started = self.stopped = 0

    def start(self, timeout: float = 60) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    async def apublish(self, channel: str, data: bytes) -> None:
        self.published.append((channel, data))


def test_the_peer_gets_each_matchs_update_records_in_a_chain() -> None:
    cards = [{"runs": r, "team": "Chennai Super Kings", "venue": "Narendra Modi Stadium"}
             for r in range(5)]
    fake = FakeCentrifugo()
    server = PeerServer(fake, 8000, cards)
    assert (server.protocol, server.path, server.pids()) == ("centrifugo", b"/connection/"
                                                             b"websocket", [4242])

    async def go() -> None:
        for match in ("a", "b", "a", "a"):
            await server.publish(match)

    asyncio.run(go())
    docs = [(ch, orjson.loads(data)) for ch, data in fake.published]
    assert [ch for ch, _ in docs] == ["a", "b", "a", "a"]   # bare ids: no namespace needed
    a = [d for ch, d in docs if ch == "a"]
    assert [(d["seq"], d["prev_seq"], d["epoch"]) for d in a] == [(1, 0, 1), (2, 1, 1),
                                                                   (3, 2, 1)]
    assert all(d["type"] == "update" and d["ts"].endswith("Z") for _, d in docs)
    assert "patch" in a[0]  # diffed from the first card, as the gateway's first update is


def test_make_peer_knows_centrifugo_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown peer"):
        make_peer("nats", tmp_path, 1, [])


def test_a_publisher_keeps_its_schedule_and_counts_late_publishes() -> None:
    """Each publish takes 30 ms, the period is 10 ms: every one is published (none skipped),
    those that could not start on time are counted late."""

    class Slow:
        def __init__(self) -> None:
            self.times: list[float] = []

        async def publish(self, match: str) -> None:
            self.times.append(time.monotonic())
            await asyncio.sleep(0.03)

    slow, late = Slow(), list[float]()
    start = time.monotonic() + 0.01
    asyncio.run(publisher(slow, "m", start, 0.01, 5, late))  # type: ignore[arg-type]
    assert len(slow.times) == 5 and len(late) == 4
    assert slow.times[0] >= start


def test_ratio_rows() -> None:
    gw, peer = (Figures(rss_per_conn=8192, p99=40.0, cpu_us=9.0),
                Figures(rss_per_conn=49152, p99=160.0, cpu_us=18.0))
    floors = {"floor": Figures(cpu_us=3.0), "syscall": Figures(cpu_us=6.0)}
    rows = dict(ratio_rows("gateway ×1", gw, floors, peer))
    assert rows["lockstep: CPU per delivery, gateway ×1 / the Python floor"].startswith("3.00×")
    assert rows["lockstep: CPU per delivery, gateway ×1 / the syscall floor"].startswith("1.50×")
    assert rows["lockstep: CPU per delivery, gateway ×1 / centrifugo"].startswith("0.50×")
    assert rows["spread: p99 delivery latency, gateway ×1 / centrifugo"].startswith("0.25×")
    assert rows["idle: RSS per connection, gateway ×1 / centrifugo"] == "0.17×"
    assert ratio_rows("gateway ×2", Figures(), {}, None) == []


@pytest.mark.parametrize("argv, says", [
    (["--scenarios", "lockstep,bogus"], "unknown scenario bogus"),
    (["--scenarios", ""], "unknown scenario"),
    (["--workers", "0"], "at least 1"),
    (["--workers", "1,1"], "distinct"),
    (["--workers", "x"], "not a whole number"),
    (["--peer", "nats", "--scenarios", "idle"], "invalid choice"),
    (["--duration", "0", "--scenarios", "spread"], "1 to 600 seconds"),
    (["--connections", "many"], "not a whole number"),
])
def test_bad_arguments_are_usage_errors(argv: list[str], says: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--no-record", "gateway", *argv])
    assert exc.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--peer", "centrifugo"], "--peer runs the scenarios against a peer"),
    (["--workers", "1,2"], "several --workers counts need --scenarios"),
    (["--scenarios", "idle", "--skip", "hot"], "--skip names phases"),
])
def test_bad_combinations_are_usage_errors(argv: list[str], says: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--no-record", "gateway", *argv]) == 2
    assert says in capsys.readouterr().err


def test_defaults_follow_scenarios() -> None:
    """Without --scenarios the bench is what it was (one gateway of 2 workers, 20,000
    clients, SCHED_BATCH); with them: 1 and 2 workers, competing clients."""
    import argparse

    from stumpcast.commands.gateway import bench_args_problem

    def ns(**kw: Any) -> argparse.Namespace:
        base = dict(scenarios=None, peer=None, workers=None, connections=None, compete=None,
                    skip="")
        return argparse.Namespace(**{**base, **kw})

    old = ns()
    assert bench_args_problem(old) is None
    assert (old.workers, old.connections, old.compete) == (2, 20_000, False)
    new = ns(scenarios=["lockstep"], peer="centrifugo")
    assert bench_args_problem(new) is None
    assert (new.workers, new.connections, new.compete) == ([1, 2], None, True)
    calm = ns(scenarios=["idle"], compete=False, workers=[2])
    assert bench_args_problem(calm) is None and (calm.workers, calm.compete) == ([2], False)
