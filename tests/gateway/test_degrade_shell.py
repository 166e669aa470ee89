"""What each degradation level changes in a gateway process: P2 notes not pushed (level 1),
score updates conflated to one snapshot per match per N s (level 2), panic mode (level 3)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import orjson
from test_hub import FakeSink

from gateway.cache import MatchCache, NotesCache
from gateway.feed import Feed
from gateway.http import HttpApi
from gateway.hub import Client, Hub
from gateway.limits import Limits
from gateway.metrics import GatewayMetrics
from gateway.panic import PanicStore
from schemas.view import decode_update, make_update


def setup() -> tuple[Feed, Hub, FakeSink]:
    hub = Hub(Limits())
    feed = Feed(None, None, hub)
    sink = FakeSink()
    client = Client(sink)
    hub.attach(client, "match:m", 0)
    hub.attach(client, "notes:m", (0, 0))
    feed.matches["m"] = MatchCache("m", 1, 0, "", {"runs": 0})
    feed.notes["m"] = NotesCache("m")
    return feed, hub, sink


def test_level_1_does_not_push_p2_notes_but_keeps_them_for_resumes() -> None:
    feed, _, sink = setup()
    feed.shed_p2 = lambda: True
    rows = [(b"1-0", {b"u": orjson.dumps({"id": "1-0", "priority": "P1"})}),
            (b"2-0", {b"u": orjson.dumps({"id": "2-0", "priority": "P2"})})]
    feed._notes_batch("m", rows)
    assert [m["note"]["priority"] for m in sink.messages()] == ["P1"]
    assert [e[:2] for e in feed.notes["m"].entries] == [(1, 0), (2, 0)]
    assert feed.shed_notes == 1


def advance(feed: Feed, seq: int) -> None:
    """One real update applied to the cache, then published as the feed does."""
    cache = feed.matches["m"]
    update = make_update("m", 1, seq, seq - 1, "", {"runs": seq - 1}, {"runs": seq})
    raw = update.encode()
    cache.apply(decode_update(raw), raw)
    feed._publish("m", cache, [(seq, raw)])


def test_level_2_sends_one_snapshot_per_match_per_interval() -> None:
    feed, _, sink = setup()
    feed.conflate = 5.0
    for seq in (1, 2, 3):
        advance(feed, seq)
    assert sink.messages() == []  # held
    assert feed.flush_conflated(100.0) == 1
    assert [(m["type"], m["seq"], m["card"]) for m in sink.messages()] == [
        ("snapshot", 3, {"runs": 3})]
    advance(feed, 4)
    assert feed.flush_conflated(102.0) == 0  # within the interval: still held
    feed.conflate = 0.0  # back below level 2: what is held goes out at once
    assert feed.flush_conflated(102.5) == 1
    assert [m["seq"] for m in sink.messages()] == [3, 4]


def test_level_3_is_panic_mode(tmp_path: Path) -> None:
    feed = SimpleNamespace(last_ok=time.monotonic(), stats=SimpleNamespace(lag_seconds=0.0))
    api = HttpApi(feed, PanicStore(tmp_path / "panic", tmp_path / "PANIC"),  # type: ignore[arg-type]
                  GatewayMetrics("0", dict))
    assert not api.panic_mode()
    level = {"now": 3}
    api.forced_panic = lambda: level["now"] >= 3
    assert api.panic_mode()
    level["now"] = 2
    assert not api.panic_mode()


def test_the_p2_marker_matches_how_notes_are_encoded() -> None:
    from gateway.feed import _P2
    from schemas.notifications import Kind, Notification, Priority

    def note(priority: Priority) -> bytes:
        return Notification("1-0", "m", Kind.FOUR, priority, "2023-05-29T14:00:00Z", 1, 1,
                            "0.1", "FOUR").encode()

    assert _P2 in note(Priority.P2) and _P2 not in note(Priority.P1)
