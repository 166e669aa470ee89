"""P2 work while shedding: counted as offered load, never fanned out, and never holding up P1.

Pure parts with fakes (``FakeSink`` from test_hub); the end to end shedding on real Redis is in
``test_degrade_shell.py``.
"""

from __future__ import annotations

import asyncio

import orjson
from test_hub import FakeSink

from gateway.cache import NotesCache
from gateway.feed import Feed
from gateway.flags import FlagFeed
from gateway.hub import Client, Hub
from gateway.limits import Limits
from gateway.watching import SLICE, WatchingRelay
from schemas.topology import RedisKeys

P2_NOTE = b'{"type":"notification","v":1,"id":"a","kind":"boundary","priority":"P2","text":"4"}'
P1_NOTE = b'{"type":"notification","v":1,"id":"b","kind":"wicket","priority":"P1","text":"W"}'


class FakePipe:
    def __init__(self, rows: dict[str, list]) -> None:
        self.rows, self.asked = rows, []

    def xrevrange(self, key: str, count: int) -> None:
        self.asked.append(key)

    async def execute(self) -> list:
        return [self.rows.get(k, []) for k in self.asked]


class FakeRedis:
    def __init__(self, rows: dict[str, list]) -> None:
        self.rows = rows

    def pipeline(self, transaction: bool = False) -> FakePipe:
        return FakePipe(self.rows)


def audience(hub: Hub, key: str, n: int) -> list[FakeSink]:
    sinks = []
    for _ in range(n):
        sink = FakeSink()
        hub.attach(Client(sink), key, (0, 0) if key.startswith("notes:") else 0)
        sinks.append(sink)
    return sinks


def test_a_watching_fan_out_lets_other_work_in_between_its_slices() -> None:
    """A score update arriving during a 1,000-client "N watching" fan-out goes out after one
    slice, not after the whole audience (the old relay sent to all in one go)."""
    hub = Hub(Limits())
    audience(hub, "match:m1", 1000)
    relay = WatchingRelay(None, hub)

    async def main() -> list[int]:
        seen: list[int] = []

        async def p1() -> None:  # first runs when the fan-out first yields
            seen.append(relay.sent)

        task = asyncio.create_task(p1())
        await relay._fan_out("match:m1", b'{"type":"watching","concurrent":7}', 0.0)
        await task
        return seen

    assert asyncio.run(main()) == [SLICE]
    assert relay.sent == 1000


def test_watching_counts_the_offered_load_while_shedding_and_sends_nothing() -> None:
    hub = Hub(Limits())
    sinks = audience(hub, "match:m1", 300)
    record = [(b"5-0", {b"u": b'{"type":"watching","concurrent":9}'})]
    flags = FlagFeed(None, hub)
    flags.level = 1
    relay = WatchingRelay(FakeRedis({RedisKeys.watching("m1"): record}), hub, flags=flags)
    asyncio.run(relay.tick())
    assert hub.stats.p2_offered == 300
    assert relay.sent == 0 and not any(s.writes for s in sinks) and hub.stats.p2_sent == 0
    flags.level = 0
    relay._last.clear()
    asyncio.run(relay.tick())
    assert relay.sent == 300 and hub.stats.p2_offered == 600 and hub.stats.p2_sent == 300


def test_p2_notes_are_counted_before_the_shed_and_p1_notes_still_go() -> None:
    hub = Hub(Limits())
    sinks = audience(hub, "notes:m1", 40)
    feed = Feed(None, None, hub)
    feed.notes["m1"] = NotesCache("m1")
    feed.shed_p2 = lambda: True
    feed._notes_batch("m1", [(b"1-0", {b"u": P2_NOTE}), (b"1-1", {b"u": P1_NOTE}),
                             (b"2-0", {b"u": P2_NOTE})])
    assert hub.stats.p2_offered == 2 * 40 and hub.stats.p2_sent == 0
    got = [orjson.loads(x)["note"]["priority"] for x in _notes(sinks[0])]
    assert got == ["P1"]
    assert feed.shed_notes == 2
    assert [e[:2] for e in feed.notes["m1"].entries] == [(1, 0), (1, 1), (2, 0)]  # resumable


def _notes(sink: FakeSink) -> list[bytes]:
    return [orjson.dumps(m) for m in sink.messages() if m["type"] == "note"]


def flag_subscribers(feed: FlagFeed, n: int) -> list[FakeSink]:
    """``n`` clients of one region and platform, each its own session, on ``feed``'s flags."""
    from schemas.flags import Context

    sinks = []
    for i in range(n):
        sink = FakeSink()
        feed.subscribe(Client(sink), None, Context("north", "web", f"s{i}"))
        sinks.append(sink)
    return sinks


def test_a_flags_push_lets_other_work_in_between_its_slices() -> None:
    """A flag (or level) change to 1,000 clients of a process: a score update arriving
    meanwhile waits for one slice, not for the whole push; every client still gets it."""
    from gateway.flags import SLICE as FLAG_SLICE

    feed = FlagFeed(None, Hub(Limits()))
    sinks = flag_subscribers(feed, 1000)

    async def main() -> list[int]:
        seen: list[int] = []

        async def p1() -> None:  # first runs when the push first yields
            seen.append(sum(len(s.writes) == 2 for s in sinks))

        task = asyncio.create_task(p1())
        assert await feed.publish(0.0) == 1000
        await task
        return seen

    assert asyncio.run(main()) == [FLAG_SLICE]
    assert all(len(s.writes) == 2 for s in sinks)


def test_the_offered_rate_is_per_second_over_about_a_second() -> None:
    from gateway.housekeeping import P2Rate

    rate = P2Rate(0.0)
    assert rate.update(500, 0.5) == 0.0  # under a second: the last rate stands
    assert rate.update(3000, 1.25) == 2400.0
    assert rate.update(3000, 2.5) == 0.0


def test_the_worst_delivery_of_the_last_whole_second() -> None:
    from gateway.housekeeping import WorstPerSecond

    worst = WorstPerSecond(0.0)
    worst.observe(0.010, 0.2)
    worst.observe(0.300, 0.9)
    assert worst.last == 0.0  # the first second is not over
    worst.observe(0.020, 1.1)
    assert worst.last == 0.300
    worst.roll(2.3)
    assert worst.last == 0.020
    worst.roll(5.0)  # nothing delivered for over a second
    assert worst.last == 0.0


def test_a_level_change_is_not_held_behind_a_flags_push_in_flight() -> None:
    """Bench 04:13 (a starved machine): a rollout's push to 10,000 clients a worker, sliced,
    took 20 s, and the level change read after it waited for it; P2 went out meanwhile. The
    level now takes effect when read; the newer push supersedes the one in flight."""
    from test_flags_core import FakeRedis, change

    from schemas.flags import LEVEL_FLAG, FlagState

    redis = FakeRedis([])
    feed = FlagFeed(redis, Hub(Limits()))
    sinks = flag_subscribers(feed, 2000)

    def versions(sink: FakeSink) -> list[int]:
        return [m["version"] for m in sink.messages() if m["type"] == "flags"]

    async def main() -> int:
        await feed.load()
        await feed.pushed()
        redis.add(change("markers", FlagState(rollout=30.0), 1))
        await feed.follow_once()  # its push to 2,000 clients starts ...
        redis.add(change(LEVEL_FLAG, FlagState(value=1), 2))
        await feed.follow_once()  # ... and the level change is read before it ends
        assert feed.level == 1 and feed.shed_p2
        reached = sum(1 in versions(s) for s in sinks)
        await feed.pushed()
        return reached

    assert asyncio.run(main()) < 2000
    assert all(versions(s)[-1] == 2 for s in sinks)
