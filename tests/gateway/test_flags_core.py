"""The gateway's flags: the channel in the protocol, per-client answers, live pushes, shedding."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from test_hub import FakeSink

from gateway.flags import FlagFeed, p2_shed
from gateway.hub import Client, Hub
from gateway.limits import Limits
from gateway.watching import WatchingRelay
from schemas import protocol as p
from schemas.flags import LEVEL_FLAG, Context, FlagChange, FlagState


def test_the_flags_channel_parses_with_its_context() -> None:
    msg = p.parse_client_message(b'{"type":"subscribe","v":1,"channel":"flags",'
                                 b'"context":{"region":"north","platform":"web"}}')
    assert isinstance(msg, p.Subscribe)
    assert (msg.channel.key, msg.context) == ("flags", ("north", "web"))
    bare = p.parse_client_message(b'{"type":"subscribe","v":1,"channel":"flags"}')
    assert isinstance(bare, p.Subscribe) and bare.context == ("unknown", "unknown")
    for bad in (b'"context":{"region":"a b"}', b'"context":{"city":"x"}', b'"context":3'):
        with pytest.raises(p.ProtocolError):
            p.parse_client_message(b'{"type":"subscribe","v":1,"channel":"flags",' + bad + b"}")
    with pytest.raises(p.ProtocolError):
        p.parse_channel("flags:x")


class FakeRedis:
    """Only what FlagFeed calls; the real Redis path is in the browser and stack tests."""

    def __init__(self, changes: list[FlagChange]) -> None:
        self.rows = {c.flag.encode(): c.encode() for c in changes}
        self.stream: list[tuple[bytes, dict[bytes, bytes]]] = []

    async def xrevrange(self, key: str, count: int) -> list:
        return self.stream[-1:]

    async def hgetall(self, key: str) -> dict:
        return dict(self.rows)

    async def xread(self, streams: dict, count: int, block: int) -> list:
        after = streams[next(iter(streams))]
        rows = [r for r in self.stream if r[0].decode() > after]
        return [(b"k", rows)] if rows else []

    def add(self, change: FlagChange) -> None:
        self.rows[change.flag.encode()] = change.encode()
        self.stream.append((f"{len(self.stream) + 1}-0".encode(), {b"u": change.encode()}))


async def follow(feed: FlagFeed) -> None:
    """One read of the change stream, and the push it started."""
    await feed.follow_once()
    await feed.pushed()


async def load(feed: FlagFeed) -> None:
    await feed.load()
    await feed.pushed()


def change(flag: str, state: FlagState, version: int) -> FlagChange:
    return FlagChange(flag, state, "t", 0, "test").with_version(version)


def subscribe(hub: Hub, feed: FlagFeed, region: str) -> tuple[Client, FakeSink]:
    sink = FakeSink()
    client = Client(sink)
    ctx = Context(region, "web", f"s-{region}-{id(client)}")
    hub.send(client, [feed.join(client, ctx)], 0.0)
    hub.attach(client, p.FLAGS, ctx)
    return client, sink


def test_a_change_reaches_each_subscriber_resolved_for_its_region(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hub = Hub(Limits())
    redis = FakeRedis([change("watching", FlagState(), 0)])
    feed = FlagFeed(redis, hub)
    asyncio.run(load(feed))
    north = [subscribe(hub, feed, "north") for _ in range(3)]
    south = subscribe(hub, feed, "south")
    redis.add(change("watching", FlagState(True, {"north": False}), 1))
    encodings = []
    real = p.flags
    monkeypatch.setattr(p, "flags", lambda *a: encodings.append(a) or real(*a))
    asyncio.run(follow(feed))
    assert len(encodings) == 2  # encoded once per distinct answer, not once per client
    for client, sink in north:
        last = sink.messages()[-1]
        assert (last["type"], last["version"], last["flags"]["watching"]) == ("flags", 1, False)
        assert p2_shed(feed, client, "watching")
    assert south[1].messages()[-1]["flags"]["watching"] is True
    assert not p2_shed(feed, south[0], "watching")


def test_an_older_version_is_ignored_and_a_level_change_is_announced() -> None:
    hub = Hub(Limits())
    redis = FakeRedis([change("watching", FlagState(False), 5)])
    feed = FlagFeed(redis, hub)
    levels: list[int] = []
    feed.on_level = levels.append
    asyncio.run(load(feed))
    redis.add(change("watching", FlagState(True), 3))
    redis.add(change(LEVEL_FLAG, FlagState(value=2), 6))
    asyncio.run(follow(feed))
    assert feed.states["watching"].enabled is False
    assert (feed.level, levels, feed.shed_p2) == (2, [2], True)


def test_watching_counts_are_not_sent_where_the_flag_is_off_nor_while_shedding() -> None:
    hub = Hub(Limits())
    feed = FlagFeed(FakeRedis([change("watching", FlagState(True, {"north": False}), 0)]), hub)
    asyncio.run(load(feed))
    relay = WatchingRelay(None, hub, flags=feed)
    clients = {}
    for region in ("north", "south"):
        client, sink = subscribe(hub, feed, region)
        hub.attach(client, "match:m1", 0)
        clients[region] = sink
    asyncio.run(relay._fan_out("match:m1", orjson.dumps({"type": "watching"}), 0.0))
    assert [m["type"] for m in clients["north"].messages()] == ["flags"]
    assert [m["type"] for m in clients["south"].messages()] == ["flags", "watching"]
    feed.level = 1
    assert p2_shed(feed, Client(FakeSink()), "markers")
    assert not p2_shed(feed, Client(FakeSink()), "scores")


def test_a_rollout_reaches_its_share_of_10000_simulated_sessions_in_the_gateway() -> None:
    """10,000 sessions with gateway-issued ids subscribe to flags in a gateway process's
    FlagFeed; a 30% rollout pushed live reaches 30% of them (±2 points), the same sessions
    each time."""
    import os

    from gateway.auth import SessionIds

    hub = Hub(Limits())
    redis = FakeRedis([])
    feed = FlagFeed(redis, hub)
    asyncio.run(load(feed))
    ids = SessionIds(os.urandom(32))
    sinks = []
    for i in range(10_000):
        sink = FakeSink()
        client = Client(sink)
        ctx = Context("north" if i % 2 else "south", "web", ids.issue(None))
        feed.join(client, ctx)
        hub.attach(client, p.FLAGS, ctx)
        sinks.append(sink)
    redis.add(change("markers", FlagState(rollout=30.0), 1))
    asyncio.run(follow(feed))
    first = [s.messages()[-1]["flags"]["markers"] for s in sinks]
    assert abs(sum(first) / 100 - 30.0) <= 2.0, f"{sum(first) / 100:.2f}% on"
    redis.add(change("watching", FlagState(False), 2))  # another flag changes...
    asyncio.run(follow(feed))
    again = [s.messages()[-1]["flags"]["markers"] for s in sinks]
    assert again == first  # ... and the rollout's sessions stay the same (sticky)


def test_heartbeats_are_sampled_by_session_while_shed_and_all_forwarded_otherwise() -> None:
    feed = FlagFeed(FakeRedis([]), Hub(Limits()))
    client = Client(FakeSink())
    sessions = [f"s{i}" for i in range(4000)]
    assert not any(feed.sampled_out(client, s, 4) for s in sessions)
    feed.level = 1
    kept = [s for s in sessions if not feed.sampled_out(client, s, 4)]
    assert abs(len(kept) / len(sessions) - 0.25) < 0.03
    assert kept == [s for s in sessions if not feed.sampled_out(client, s, 4)]  # sticky
    feed.level = 0
    client.off = frozenset({"heartbeats_detailed"})  # the flag off for this client alone
    assert [s for s in sessions if not feed.sampled_out(client, s, 4)] == kept
